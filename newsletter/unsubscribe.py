"""Unsubscribe tokens: who and which list, sealed so nobody can read them or unsubscribe someone else.

The token rides in the List-Unsubscribe header, the footer link and the subject of unsubscribe emails, so
it ends up in web-server logs and mail archives. It is therefore encrypted as well as authenticated
(AES-SIV with a key derived from the secret): without the secret it says nothing about the reader. It is
dated, so old tokens can be refused, and about 140 characters for a typical address.

Tokens made before the change (itsdangerous: signed, not encrypted; they contain a dot) are still read,
so links in emails already sent keep working until they expire. Drop that once MAX_AGE has passed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import struct
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from newsletter.errors import BadToken

MAX_AGE = 400 * 24 * 3600
"""A token works for about a year and a month: long enough for last year's issue."""

GROUP = 25
"""Characters of a token between two `~`. SpamAssassin reads a run of 30 to 35 letters and digits that starts
with 1 or 3 as a Bitcoin address (PDS_BTC_ID, a point towards spam); about one token in 2,500 had one."""
VERSION = b"\x01"
"""The first byte of every token, authenticated too: a new format can be told from this one."""
_HEADER = struct.Struct(">IH")
"""When it was made (Unix seconds) and the length of the address in bytes; then the address and list id."""


@functools.lru_cache(maxsize=8)
def _cipher(secret: str) -> AESSIV:
    """The key, derived once per secret: the secret may be any string, the cipher needs 32 random-looking bytes."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"newsletter unsubscribe token v1").derive(
        secret.encode()
    )
    return AESSIV(key)


def make_token(email: str, list_id: str, secret: str) -> str:
    address = email.encode()
    sealed = _cipher(secret).encrypt(
        _HEADER.pack(int(time.time()), len(address)) + address + list_id.encode(), [VERSION]
    )
    return grouped(base64.urlsafe_b64encode(VERSION + sealed).rstrip(b"=").decode("ascii"))


def grouped(text: str) -> str:
    """URL-safe base64 with a `~` (unreserved in URLs, and not part of a word) every GROUP characters."""
    return "~".join(text[start : start + GROUP] for start in range(0, len(text), GROUP))


def read_token(token: str, secret: str, max_age: int = MAX_AGE) -> tuple[str, str]:
    """(email, list id) from a token; BadToken when it was tampered with or is too old."""
    if "." in token:
        return _read_signed(token, secret, max_age)
    try:
        token = token.replace("~", "")  # the groups (tokens made before they were grouped have none)
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        if raw[:1] != VERSION:
            raise ValueError("not a token")
        plain = _cipher(secret).decrypt(raw[1:], [VERSION])
        made, length = _HEADER.unpack_from(plain)
        email = plain[_HEADER.size : _HEADER.size + length].decode()
        list_id = plain[_HEADER.size + length :].decode()
    except (InvalidTag, ValueError, binascii.Error, struct.error):
        raise BadToken("invalid") from None
    if time.time() - made > max_age:
        raise BadToken("expired")
    return email, list_id


def _read_signed(token: str, secret: str, max_age: int) -> tuple[str, str]:
    """A token in the old signed format, from an email sent before tokens were encrypted."""
    try:
        email, list_id = URLSafeTimedSerializer(secret, salt="newsletter-unsubscribe").loads(token, max_age=max_age)
    except SignatureExpired:
        raise BadToken("expired") from None
    except (BadSignature, ValueError, TypeError):
        raise BadToken("invalid") from None
    return str(email), str(list_id)
