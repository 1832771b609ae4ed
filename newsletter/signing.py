"""DKIM signatures (RFC 6376, relaxed/relaxed) made with `cryptography`: RSA-SHA256, Ed25519-SHA256 (RFC 8463), or both.

dkimpy signs with its own pure-Python RSA (about 6 ms a message) and canonicalises the whole body with
regular expressions every time (about 1.5 ms for the sample issue). Here the RSA or Ed25519 step is
OpenSSL's, and the body is canonicalised in pieces: the pieces that are the same in every message of a
variant (everything but the reader's own fields) are canonicalised once, and the hash of the body up to
the first personal field is computed once and carried on with `hashlib`'s `copy()`. What each message
costs is the SHA-256 of the rest of its body, its own fields, its headers and the signature itself.

The canonicalisation is dkimpy's (`dkim.canonicalization`): its relaxed header canonicalisation, and its
line rules for the body (`strip_trailing_whitespace`, `compress_whitespace`). Done here: the removal of
empty lines at the end of the body, because the body arrives in pieces; fast paths that skip the regular
expressions where they would change nothing (text without tabs, runs of spaces or folding); and the choice
of the fields to sign, as dkimpy's `select_headers` makes it. Tests hold each equal to dkimpy's on random
input, and dkimpy's verifier checks the signatures. The DKIM-Signature field has dkimpy's tags in dkimpy's
order (v, a, c, d, i, q, s, t, h, bh, b), folded under 78 characters with b= on lines of its own; for the
same time and key its b= is dkimpy's, byte for byte (RSA PKCS#1 v1.5 is deterministic).

    signer = Signer(key_pem, "news2025", "example.org", include_headers=[b"from", b"to", b"subject", ...])
    data = signer.sign(data, body_pieces) + data     # body_pieces: optional, what the body was joined from

A key that cannot sign is a ConfigError saying so in one line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import rsa
from dkim.canonicalization import (
    CanonicalizationPolicy,
    compress_whitespace,
    strip_trailing_whitespace,
)

from newsletter.errors import ConfigError, JobError
from newsletter.keys import REPLY, REQUEST, PrivateKey, handover, load_key, sign_digest

__all__ = ["DEFAULT_HEADERS", "Pending", "Signer", "SigningProcess", "finish"]

DEFAULT_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type")
LINE = 78
"""The DKIM-Signature field is folded to lines of at most this many characters (RFC 5322's recommendation)."""

_RELAXED = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
_CRLF = b"\r\n"
_SELECTOR = re.compile(rb"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?)*")
_DOMAIN = re.compile(rb"(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}")
_SPACES_AT_END = re.compile(rb" +\r\n")
_SPACES = re.compile(rb"  +")
_FIELD_END = re.compile(rb"\r\n(?![ \t])")
_HEADER_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
_T_DIGITS = 10
"""t= is ten digits from 2001 to 2286: the field's layout is the same for every message and is made once."""
_T_MARK, _BH_MARK = b"\x00" * _T_DIGITS, b"\x01" * 44

Pending = list[tuple["_Key", bytes, bytes]]
"""A message's signatures, prepared: for each key, its field up to `b=` and the digest its signature covers."""


class Signer:
    """Signs messages for one domain with one key, or several (say RSA and Ed25519, each with its selector).

    Made once per variant of an issue (per `Composer`): it keeps what the variant's messages share.
    `sign(data)` returns the DKIM-Signature field(s) to put before `data`, CRLF-terminated, like
    `dkim.sign`. Not thread-safe (one per Composer, as the send job uses them).
    """

    def __init__(
        self,
        key: bytes,
        selector: str | bytes,
        domain: str | bytes,
        *,
        include_headers: Sequence[bytes | str] = DEFAULT_HEADERS,
        also: Sequence[tuple[bytes, str | bytes]] = (),
        name: str = "the DKIM key",
    ) -> None:
        domain_b = domain.encode("ascii", "replace") if isinstance(domain, str) else domain
        if not _DOMAIN.fullmatch(domain_b):
            raise ConfigError(
                f"the DKIM domain `{domain_b.decode('ascii', 'replace')}` is not a domain name in"
                " ASCII (like wmchildrensservices.org.uk)"
            )
        headers = tuple((h.encode() if isinstance(h, str) else h).lower() for h in include_headers)
        if b"from" not in headers:
            raise ValueError("DKIM must sign the From field (RFC 6376 5.4)")
        if any(not _HEADER_NAME.fullmatch(h) or h == b"dkim-signature" for h in headers):
            raise ValueError(f"cannot sign these header fields: {headers!r}")
        self.domain = domain_b
        self.include_headers = headers
        self._keys = [_Key(load_key(key, name), selector, domain_b, headers)]
        for index, (extra, extra_selector) in enumerate(also, start=2):
            self._keys.append(_Key(load_key(extra, f"{name} ({index})"), extra_selector, domain_b, headers))
        self._fields: dict[bytes, tuple[bytes, bytes]] = {}
        self._last: list[bytes] = []
        self._pieces: dict[int, _Piece] = {}
        self._prefix: tuple[int, _BodyHash] | None = None

    @property
    def algorithms(self) -> list[str]:
        return [key.algorithm.decode() for key in self._keys]

    def sign(self, data: bytes, body: Sequence[bytes] | None = None, *, now: float | None = None) -> bytes:
        """The DKIM-Signature field(s) for `data` (a whole message, CRLF line ends), to be put before it.

        `body`, when given, is the list of pieces the body (everything after the blank line that ends the
        header) was joined from: pieces that come back at the same place in the next message are
        canonicalised once, and the hash of the leading pieces that stay the same is reused.
        """
        return finish(self.prepare(data, body, now=now))

    def prepare(self, data: bytes, body: Sequence[bytes] | None = None, *, now: float | None = None) -> Pending:
        """Everything but the private-key operations, which `finish` does (a send job has its signing process
        do them: `SigningProcess`)."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            raise ValueError("a message to sign needs a header, a blank line and a body")
        head = data[: end + 2]
        if body is None:
            body_hash = _BodyHash()
            body_hash.feed(data[end + 4 :])
            digest = body_hash.digest()
        else:
            if sum(map(len, body)) != len(data) - end - 4:
                raise ValueError("the body pieces are not the message's body")
            digest = self._body_digest(body)
        bh = base64.b64encode(digest)
        t = b"%d" % int(time.time() if now is None else now)
        signed = self._signed_headers(head)
        return [key.prepare(signed, t, bh) for key in self._keys]

    def _signed_headers(self, head: bytes) -> bytes:
        """The relaxed form of the fields to sign, as dkimpy's `select_headers` picks them: for each name in
        `include_headers`, the last field of that name not picked yet (a name listed twice takes the last two).

        A field that was in the previous message too (the same bytes) is not canonicalised again.
        """
        known, seen = self._fields, {}
        found: dict[bytes, list[bytes]] = {}
        for field in _FIELD_END.split(head[:-2]):
            entry = known.get(field)
            if entry is None:
                name, colon, value = field.partition(b":")
                if not colon or not _HEADER_NAME.fullmatch(name):
                    raise ValueError(f"a message to sign has a malformed header line: {field[:60]!r}")
                entry = (name.lower(), _canonical_field(name, value))
            seen[field] = entry
            found.setdefault(entry[0], []).append(entry[1])
        self._fields = seen
        return b"".join(same.pop() for name in self.include_headers if (same := found.get(name)))

    def _body_digest(self, pieces: Sequence[bytes]) -> bytes:
        last = self._last
        same = 0  # how many leading pieces are those of the previous message
        while same < len(pieces) and same < len(last) and pieces[same] == last[same]:
            same += 1
        # The saved prefix is always the hash state after the previous message's first k pieces.
        if self._prefix is not None and self._prefix[0] > same:
            self._prefix = None
        if self._prefix is not None:
            done, state = self._prefix[0], self._prefix[1].copy()
        else:
            done, state = 0, _BodyHash()
        for index in range(done, len(pieces)):
            if index == same and same and (self._prefix is None or self._prefix[0] != same):
                self._prefix = (same, state.copy())
            piece = pieces[index]
            cached = self._pieces.get(index)
            if cached is not None and cached.raw == piece:
                state.feed_piece(cached)
            elif index < len(last) and last[index] == piece:  # as in the previous message: it will come again
                cached = self._pieces[index] = _Piece(piece)
                state.feed_piece(cached)
            else:  # the reader's own (or new)
                state.feed(piece)
        if same == len(pieces) and same and (self._prefix is None or self._prefix[0] != same):
            self._prefix = (same, state.copy())
        self._last = list(pieces)
        return state.digest()


class _Key:
    """One key's part of the signing: its algorithm, the layout of its DKIM-Signature field, and the signature."""

    def __init__(self, key: PrivateKey, selector: str | bytes, domain: bytes, headers: tuple[bytes, ...]) -> None:
        selector_b = selector.encode("ascii", "replace") if isinstance(selector, str) else selector
        if not _SELECTOR.fullmatch(selector_b):
            raise ConfigError(
                f"the DKIM selector `{selector_b.decode('ascii', 'replace')}` must be letters, digits,"
                " hyphens and dots, like news2025"
            )
        self.key = key
        self.rsa = isinstance(key, rsa.RSAPrivateKey)
        self.algorithm = b"rsa-sha256" if self.rsa else b"ed25519-sha256"
        self.selector = selector_b
        self.domain = domain
        self.headers = headers
        # The field up to and including "b=", with the marks where t= and bh= go (their length never changes).
        self.template = self.layout(_T_MARK, _BH_MARK).split(_T_MARK)
        self.template = [self.template[0], *self.template[1].split(_BH_MARK)]
        self.canonical = self.canonical_template()

    def tags(self, t: bytes, bh: bytes) -> list[bytes]:
        """dkimpy's tags in dkimpy's order, each as it is written (`h=` split at its colons, so it can fold)."""
        names = [b"h=" + self.headers[0]] + [part for h in self.headers[1:] for part in (b":", h)]
        return [
            b"v=1;",
            b"a=" + self.algorithm + b";",
            b"c=relaxed/relaxed;",
            b"d=" + self.domain + b";",
            b"i=@" + self.domain + b";",
            b"q=dns/txt;",
            b"s=" + self.selector + b";",
            b"t=" + t + b";",
            *names[:-1],
            names[-1] + b";",
            b"bh=" + bh + b";",
        ]

    def layout(self, t: bytes, bh: bytes) -> bytes:
        """`DKIM-Signature: v=1; ...; bh=...;` folded before any word that would pass 78 characters, then
        CRLF and ` b=` (the signature goes on lines of its own, as dkimpy puts it)."""
        line, lines = b"DKIM-Signature:", []
        for word in self.tags(t, bh):
            if len(line) + 1 + len(word) > LINE and line.strip() != b"DKIM-Signature:":
                lines.append(line)
                line = b" " + word
            else:
                line += b" " + word
        lines.append(line)
        return _CRLF.join(lines) + b"\r\n b="

    def canonical_template(self) -> list[bytes]:
        """The relaxed form of the field with an empty b= (what the signature covers), split at the marks.

        Computed from the real layout with dkimpy's canonicalisation, so it is what a verifier computes.
        """
        name, value = self.layout(_T_MARK, _BH_MARK).split(b":", 1)
        ((cname, cvalue),) = _RELAXED.canonicalize_headers([(name, value)])
        text = cname + b":" + cvalue.rstrip(b"\r\n")
        before_t, rest = text.split(_T_MARK)
        before_bh, after_bh = rest.split(_BH_MARK)
        return [before_t, before_bh, after_bh]

    def prepare(self, signed_headers: bytes, t: bytes, bh: bytes) -> tuple[_Key, bytes, bytes]:
        """This key's field up to `b=`, and the SHA-256 of what its signature covers (the signed fields, then
        this field with an empty b=)."""
        if len(t) == _T_DIGITS and len(bh) == len(_BH_MARK):
            head = self.template[0] + t + self.template[1] + bh + self.template[2]
            canonical = self.canonical[0] + t + self.canonical[1] + bh + self.canonical[2]
        else:  # a test's odd clock: lay the field out again
            head = self.layout(t, bh)
            name, value = head.split(b":", 1)
            ((cname, cvalue),) = _RELAXED.canonicalize_headers([(name, value)])
            canonical = cname + b":" + cvalue.rstrip(b"\r\n")
        return self, head, hashlib.sha256(signed_headers + canonical).digest()

    @staticmethod
    def field(head: bytes, signature: bytes) -> bytes:
        return head + _fold_signature(base64.b64encode(signature)) + _CRLF


def finish(prepared: Pending) -> bytes:
    """The DKIM-Signature field(s) of a prepared message: thread-safe, and most of its time is OpenSSL's."""
    return b"".join(key.field(head, sign_digest(key.key, digest)) for key, head, digest in prepared)


def _fold_signature(b64: bytes) -> bytes:
    """The b= value after ` b=` on lines of at most 78 characters."""
    first = LINE - len(b" b=")
    parts = [b64[:first]] + [b64[i : i + LINE - 1] for i in range(first, len(b64), LINE - 1)]
    return b"\r\n ".join(parts)


def _canonical_field(name: bytes, value: bytes) -> bytes:
    """`name:value` (value as it follows the colon, folding included) in relaxed form, CRLF-terminated: dkimpy's
    `Relaxed.canonicalize_headers`, skipped for a value with nothing to unfold or compress (the same bytes)."""
    if b"\n" in value or b"\t" in value or b"  " in value:
        ((name, value),) = _RELAXED.canonicalize_headers([(name, value + _CRLF)])
        return name + b":" + value
    return name.lower().rstrip() + b":" + value.strip() + _CRLF


def _canonical_lines(data: bytes) -> bytes:
    """dkimpy's relaxed canonicalisation of the lines of a body (`strip_trailing_whitespace`, then
    `compress_whitespace`), without the removal of empty lines at the end, which `_BodyHash` does across pieces.

    Text without tabs (all of ours) takes a path that gives the same bytes in a tenth of the time: runs of
    spaces before CRLF removed, runs of two or more spaces made one (tests hold it equal to dkimpy's).
    """
    if b"\t" in data:
        return bytes(compress_whitespace(strip_trailing_whitespace(data)))  # dkimpy is untyped
    if b" \r\n" in data:
        data = _SPACES_AT_END.sub(b"\r\n", data)
    if b"  " in data:
        data = _SPACES.sub(b" ", data)
    return data


def _split_blank(canonical: bytes) -> tuple[bytes, int]:
    """Canonical whole lines as (the text before the CRLFs that end them, how many CRLFs those are)."""
    count, end = 0, len(canonical)
    while end >= 2 and canonical.startswith(_CRLF, end - 2, end):
        count += 1
        end -= 2
    return canonical[:end], count


class _Piece:
    """A body piece canonicalised once. A piece that starts a line (the usual case) is hashed from `whole`, its
    whole lines in canonical form; otherwise its first line is finished with what came before and `middle`
    follows. `last` is its unended last line, which the next piece finishes."""

    __slots__ = ("first", "last", "middle", "middle_blank", "raw", "whole", "whole_blank")

    def __init__(self, raw: bytes) -> None:
        _check_line_ends(raw)
        self.raw = raw
        start, stop = raw.find(_CRLF), raw.rfind(_CRLF)
        if start < 0:
            self.first = self.middle = self.whole = self.last = None
            self.middle_blank = self.whole_blank = 0
            return
        self.first = raw[: start + 2]
        self.middle, self.middle_blank = _split_blank(_canonical_lines(raw[start + 2 : stop + 2]))
        self.whole, self.whole_blank = _split_blank(_canonical_lines(raw[: stop + 2]))
        self.last = raw[stop + 2 :]


def _check_line_ends(data: bytes) -> None:
    crlf = data.count(_CRLF)
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        # A bare CR or LF would be sent as it is by us and read as a line end by others: the hashes would differ.
        raise ValueError("a message to sign must have CRLF line ends only (a bare CR or LF is in its body)")


class _BodyHash:
    """SHA-256 of the relaxed canonical body, fed in pieces.

    Lines are canonicalised whole (a line can span pieces); CRLFs that might be the body's trailing empty
    lines are held back until something else follows them.
    """

    __slots__ = ("blank", "hash", "line", "started")

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.line = b""  # the current line, not yet ended (raw)
        self.blank = 0  # CRLFs held back: the last hashed line's end and the empty lines after it
        self.started = False  # anything but CRLFs hashed yet

    def copy(self) -> _BodyHash:
        other = _BodyHash.__new__(_BodyHash)
        other.hash, other.line, other.blank, other.started = self.hash.copy(), self.line, self.blank, self.started
        return other

    def _emit(self, canonical: bytes, blank: int) -> None:
        """Hash canonical whole lines `canonical` (without their trailing CRLFs), then hold back `blank` CRLFs."""
        if canonical:
            if self.blank:
                self.hash.update(_CRLF * self.blank)
            self.hash.update(canonical)
            self.started = True
            self.blank = blank
        else:
            self.blank += blank

    def _lines(self, data: bytes) -> None:
        """Whole lines (data ends with CRLF), raw."""
        self._emit(*_split_blank(_canonical_lines(data)))

    def feed(self, data: bytes) -> None:
        _check_line_ends(data)
        if self.line:
            data = self.line + data
        end = data.rfind(_CRLF)
        if end < 0:
            self.line = data
            return
        self._lines(data[: end + 2])
        self.line = data[end + 2 :]

    def feed_piece(self, piece: _Piece) -> None:
        if piece.first is None or piece.middle is None or piece.whole is None or piece.last is None:
            self.feed(piece.raw)  # no line end in it
        elif self.line:
            self._lines(self.line + piece.first)
            self._emit(piece.middle, piece.middle_blank)
            self.line = piece.last
        else:
            self._emit(piece.whole, piece.whole_blank)
            self.line = piece.last

    def digest(self) -> bytes:
        """The body hash; a body that does not end with CRLF is taken to end with one (RFC 6376 3.4.4)."""
        final = self.copy()
        if final.line:
            final._emit(_canonical_lines(final.line), 0)
        if final.started:
            final.hash.update(_CRLF)  # the last line's end; the empty lines after it are not part of the body
        return final.hash.digest()


# -- the private-key work in a process of its own ---------------------------------------------------------


class SigningProcess:
    """Signs prepared messages in a child process, for the send job.

    An RSA-2048 signature is about 250 µs of OpenSSL. In the job's own process it would take a third of
    the event loop's time per message, and a thread would fight the loop for the GIL at every system call.
    A child process (`python -m newsletter.keys`) signs on the other core; the job's only work per message is
    37 bytes to the child's stdin and its 262-byte answer, read by the event loop. The requests are that
    small on purpose: the job has a few dozen out at most, so its writes never wait for a full pipe, and the
    replies are read as they come, so the two can never wait on each other. The keys reach the child through
    that pipe (never a file, an argument or the environment). If the child dies, every waiting message fails
    with a JobError and the job stops at once.
    """

    def __init__(self, process: subprocess.Popen[bytes], keys: list[bytes]) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.requests = process.stdin.fileno()
        self.replies = process.stdout.fileno()
        self.index = {id(load_key(key)): number for number, key in enumerate(keys)}
        self.waiting: dict[int, tuple[_Message, int, _Key, bytes]] = {}
        """Request number: the message, which of its fields, the key and the field up to b=."""
        self.next = 0
        self.failed: str | None = None
        self.buffer = b""
        self.loop = asyncio.get_running_loop()
        os.set_blocking(self.replies, False)
        self.loop.add_reader(self.replies, self._read)

    @classmethod
    async def start(cls, keys: list[bytes]) -> SigningProcess:
        process = subprocess.Popen(
            [sys.executable, "-m", "newsletter.keys"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert process.stdin is not None
        # Small writes straight to the pipe: a request never waits (64 KB of pipe holds 1,700 of them, and the
        # job has a few dozen out at most), and a dead child shows as BrokenPipeError here or EOF there.
        process.stdin.write(handover(keys))
        process.stdin.flush()
        return cls(process, keys)

    def fields(self, prepared: Pending) -> asyncio.Future[list[bytes]]:
        """The DKIM-Signature field of each prepared key, asked of the child now, ready when it answers."""
        future: asyncio.Future[list[bytes]] = self.loop.create_future()
        if self.failed:
            _fail(future, self.failed)
            return future
        message = _Message(future, len(prepared))
        requests = []
        for place, (key, head, digest) in enumerate(prepared):
            self.next = (self.next + 1) & 0xFFFFFFFF
            self.waiting[self.next] = (message, place, key, head)
            requests.append(REQUEST.pack(self.next, self.index[id(key.key)], digest))
        try:
            os.write(self.requests, b"".join(requests))
        except OSError as exc:
            self._stopped(exc)
        return future

    def _read(self) -> None:
        """Every reply that has arrived, in one go (the loop calls this when the pipe has data)."""
        try:
            data = os.read(self.replies, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._stopped(exc)
            return
        if not data:
            self._stopped(None)
            return
        buffer = self.buffer + data
        start = 0
        while len(buffer) - start >= REPLY.size:
            number, length = REPLY.unpack_from(buffer, start)
            end = start + REPLY.size + length
            if end > len(buffer):
                break
            message, place, key, head = self.waiting.pop(number)
            message.fields[place] = key.field(head, buffer[start + REPLY.size : end])
            message.missing -= 1
            if message.missing == 0 and not message.future.done():
                message.future.set_result(message.fields)
            start = end
        self.buffer = buffer[start:]

    def _stopped(self, exc: OSError | None) -> None:
        if self.failed is None:
            why = type(exc).__name__ if exc else f"exit code {self.process.poll()}"
            self.failed = f"the DKIM signing process stopped ({why})"
        self.loop.remove_reader(self.replies)
        for message, _, _, _ in self.waiting.values():
            _fail(message.future, self.failed)
        self.waiting.clear()

    async def close(self) -> None:
        """Ends the child (it stops when its stdin closes) and waits for it."""
        self.failed = self.failed or "the DKIM signing process was closed"
        self.loop.remove_reader(self.replies)
        with contextlib.suppress(OSError):
            self.process.stdin.close()  # type: ignore[union-attr]
        try:
            await asyncio.to_thread(self.process.wait, 5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)
        self.process.stdout.close()  # type: ignore[union-attr]


class _Message:
    __slots__ = ("fields", "future", "missing")

    def __init__(self, future: asyncio.Future[list[bytes]], keys: int) -> None:
        self.future = future
        self.fields = [b""] * keys
        self.missing = keys


def _fail(future: asyncio.Future[list[bytes]], why: str) -> None:
    """A message that cannot be signed: its worker raises JobError (a message nobody waits for any more, because
    the job is stopping, is not logged as an error nobody saw)."""
    if not future.done():
        future.set_exception(JobError(why))
        future.exception()
