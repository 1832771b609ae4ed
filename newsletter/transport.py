"""Where messages go: a local outbox (Maildir of .eml files, the default) or an SMTP relay.

One `Transport` is one connection. The send job opens as many as it is allowed and hands each a
message at a time; a transport answers with a `Result` and never raises for a recipient's fate:
`sent`, `deferred` (try again later: 4xx, timeouts, dropped connections) or `failed` (5xx).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import mailbox
import re
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiosmtplib

from newsletter.config import TransportSettings
from newsletter.errors import TransportError
from newsletter.message import Outgoing


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    status: Literal["sent", "deferred", "failed"]
    reply: str


class Transport(ABC):
    async def __aenter__(self) -> Transport:
        await self.open()
        return self

    async def open(self) -> None:
        """Get ready before the first message, so pacing measures hand-offs, not handshakes."""
        return None

    async def verify(self) -> None:
        """Prove the transport can work at all before anyone is queued; TransportError says why not."""
        await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        return None

    @abstractmethod
    async def deliver(self, message: Outgoing) -> Result: ...


class Outbox(Transport):
    """A Maildir: each message lands in `new/` by an atomic rename, readable by any mail program."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        try:
            self.box = mailbox.Maildir(directory, factory=None, create=True)
        except OSError as exc:
            raise TransportError(f"cannot use the outbox {self.directory}: {exc.strerror or exc}") from None

    async def verify(self) -> None:
        """A probe message written and removed: a read-only or full disk shows now, not mid-run."""
        try:
            self.box.remove(self.box.add(b"Subject: probe\r\n\r\nnewsletter checks it can write here\r\n"))
        except OSError as exc:
            raise TransportError(f"cannot write to the outbox {self.directory}: {exc.strerror or exc}") from None

    async def deliver(self, message: Outgoing) -> Result:
        try:
            key = self.box.add(message.data)
        except OSError as exc:  # a full disk or a lost folder fails every reader alike: stop the job
            raise TransportError(f"cannot write to the outbox {self.directory}: {exc.strerror or exc}") from None
        return Result("sent", f"250 saved to {self.directory / 'new' / key}")


class Smtp(Transport):
    """One aiosmtplib connection, opened on first use and again after a drop."""

    def __init__(self, url: str, settings: TransportSettings, password: str | None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise TransportError(f"`{url}` is not a relay address: use smtp://host:587 or smtps://host:465")
        self.host = parts.hostname
        self.implicit_tls = parts.scheme == "smtps"
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0 or (port is None and parts.netloc.endswith(":")):
            raise TransportError(f"`{url}` has no valid port: use a number from 1 to 65535, like smtp://host:587")
        self.port = port or (465 if self.implicit_tls else 587)
        self.username = settings.username or (unquote(parts.username) if parts.username else None)
        self.password = password
        if self.username and not password:
            raise TransportError("the relay needs a password: set NEWSLETTER_SMTP_PASSWORD in the environment")
        local = is_loopback(self.host)
        self.starttls = settings.starttls if settings.starttls is not None else (None if local else True)
        if not local and not self.implicit_tls and self.starttls is False:
            raise TransportError(f"refusing to send to {self.host} without TLS")
        self.timeout = settings.timeout
        self.client: aiosmtplib.SMTP | None = None

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.implicit_tls,
            start_tls=self.starttls,
            timeout=self.timeout,
            tls_context=ssl.create_default_context(),
        )
        try:
            await client.connect()
            if self.username:
                await client.login(self.username, self.password or "")
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise TransportError(f"the relay refused the login for {self.username}: {exc.code} {exc.message}") from None
        except aiosmtplib.SMTPException as exc:
            if "STARTTLS" in str(exc):
                raise TransportError(f"{self.host} does not offer STARTTLS, which is required: {exc}") from None
            raise
        return client

    async def open(self) -> None:
        try:
            self.client = await self._connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self.client = None  # the first delivery tries again and records why it failed

    async def verify(self) -> None:
        """Connect and log in once: a wrong password or an unreachable relay ends the run before it starts."""
        try:
            client = await self._connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransportError(f"cannot reach the relay {self.host}:{self.port}: {_reason(exc)}") from None
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()

    async def deliver(self, message: Outgoing) -> Result:
        try:
            if self.client is None or not self.client.is_connected:
                self.client = await self._connect()
            reply = await self._send(self.client, message)
        except aiosmtplib.SMTPSenderRefused as exc:
            if 500 <= exc.code < 600:  # the relay will not take mail from us at all: every reader would fail
                raise TransportError(f"the relay refused our sender {exc.sender}: {exc.code} {exc.message}") from None
            return _refused(exc.code, exc.message)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:  # the server is closing this connection
                await self._drop()
            return _refused(exc.code, exc.message)
        except ValueError as exc:  # this reader's address cannot go on a command line (UnicodeError too)
            return Result("failed", f"the address cannot be sent to this relay: {exc}")
        except (
            aiosmtplib.SMTPServerDisconnected,
            aiosmtplib.SMTPConnectError,
            aiosmtplib.SMTPTimeoutError,
            aiosmtplib.SMTPConnectTimeoutError,
            aiosmtplib.SMTPReadTimeoutError,
            OSError,
            TimeoutError,
        ) as exc:
            await self._drop()
            return Result("deferred", f"connection: {type(exc).__name__}: {exc}".strip())
        return Result("sent", reply)

    async def _send(self, client: aiosmtplib.SMTP, message: Outgoing) -> str:
        """One message, the way aiosmtplib's `sendmail` sends it: EHLO (or HELO) when not done yet, MAIL with
        SIZE when offered, RCPT, DATA, and RSET after a refusal; returns the reply to the data.

        The difference is the data: `sendmail` normalises line ends and doubles leading dots with regular
        expressions over the whole message (the line ends twice when the server offers SIZE), which took
        more time than composing the message. `_wire` does the same with byte counts and replaces.
        """
        if client.is_ehlo_or_helo_needed:
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                if not client.is_connected:
                    raise
                await client.helo()
        if message.wire is not None:  # composed and dot-stuffed already, in pieces: one copy, here
            payload, size = b"".join([*message.wire, b".\r\n"]), len(message.data)
        else:
            payload, size = _wire(message.data, message.crlf)
        options = [f"size={size}"] if client.supports_extension("size") else []
        try:
            if _DOT_ATOM.fullmatch(message.sender) and _DOT_ATOM.fullmatch(message.recipient):
                # What client.mail and client.rcpt send for such addresses, without parsing them twice each.
                response = await client.execute_command(
                    b"MAIL", f"FROM:<{message.sender}>".encode(), *(option.encode() for option in options)
                )
                if response.code != 250:
                    raise aiosmtplib.SMTPSenderRefused(response.code, response.message, message.sender)
                response = await client.execute_command(b"RCPT", f"TO:<{message.recipient}>".encode())
                if response.code not in (250, 251):
                    raise aiosmtplib.SMTPRecipientRefused(response.code, response.message, message.recipient)
            else:
                await client.mail(message.sender, options=options)
                await client.rcpt(message.recipient)
            response = await client.execute_command(b"DATA")
            if response.code != 354:
                raise aiosmtplib.SMTPDataError(response.code, response.message)
            if client.protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
            client.protocol.write(payload)
            response = await client.protocol.read_response(timeout=self.timeout)
            if response.code != 250:
                raise aiosmtplib.SMTPDataError(response.code, response.message)
        except (aiosmtplib.SMTPResponseException, ValueError):  # ValueError: an address unsafe on a command line
            with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
                await client.rset()  # as sendmail does: leave no half-open envelope for the next message
            raise
        return response.message

    async def _drop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()


_LINE_END = re.compile(rb"\r\n|\n|\r(?!\n)")
_DOT_ATOM = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
"""An address that aiosmtplib's quote_address passes through unchanged, as <address>."""


def _wire(data: bytes, crlf: bool = False) -> tuple[bytes, int]:
    """The DATA payload exactly as aiosmtplib makes it (every line end CRLF, a CRLF at the end, a dot added to
    lines that start with one, the closing dot line), and the SIZE it declares (before the dots are added).

    Composed messages are CRLF throughout already (`crlf`), or else three byte counts show whether they
    are; then a `replace` does what would otherwise be regular-expression passes over the whole message.
    """
    if not crlf:
        pairs = data.count(b"\r\n")
        if data.count(b"\r") != pairs or data.count(b"\n") != pairs:
            data = _LINE_END.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n", len(data)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    return str(exc) or type(exc).__name__


def _refused(code: int, message: str) -> Result:
    return Result("failed" if 500 <= code < 600 else "deferred", f"{code} {message}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_relay(url: str) -> bool:
    """Rates and daily caps are the relay's rules; the local outbox has none."""
    return not url.startswith("outbox:")


def opener(url: str, settings: TransportSettings, password: str | None = None) -> Callable[[], Transport]:
    """A function that opens one connection of the transport named by `url`."""
    if url.startswith("outbox:"):
        directory = Path(url.removeprefix("outbox:") or "outbox")
        return lambda: Outbox(directory)
    Smtp(url, settings, password)  # validate the URL and TLS policy now, before anything is queued
    return lambda: Smtp(url, settings, password)
