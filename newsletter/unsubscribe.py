"""Unsubscribe tokens: who and which list, sealed so nobody can read them or unsubscribe someone else.

The token rides in the List-Unsubscribe header, the footer link and the subject of unsubscribe emails, so
it ends up in web-server logs and mail archives. It is therefore sealed (newsletter.sealed: encrypted and
authenticated, AES-SIV with a key derived from the secret): without the secret it says nothing about the reader. It is
dated, so old tokens can be refused, and about 140 characters for a typical address.

Tokens made before the change (itsdangerous: signed, not encrypted; they contain a dot) are still read,
so links in emails already sent keep working until they expire. Drop that once MAX_AGE has passed.
"""

from __future__ import annotations

import struct
import time

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from newsletter.errors import BadToken
from newsletter.sealed import seal, unseal

MAX_AGE = 400 * 24 * 3600
"""A token works for about a year and a month: long enough for last year's issue."""

INFO = b"newsletter unsubscribe token v1"
"""HKDF's info for the tokens' key (newsletter.sealed)."""
VERSION = b"\x01"
"""The first byte of every token, authenticated too: a new format can be told from this one."""
_HEADER = struct.Struct(">IH")
"""When it was made (Unix seconds) and the length of the address in bytes; then the address and list id."""


def make_token(email: str, list_id: str, secret: str) -> str:
    address = email.encode()
    return seal(_HEADER.pack(int(time.time()), len(address)) + address + list_id.encode(), secret, INFO, [VERSION])


def read_token(token: str, secret: str, max_age: int = MAX_AGE) -> tuple[str, str]:
    """(email, list id) from a token; BadToken when it was tampered with or is too old."""
    if "." in token:
        return _read_signed(token, secret, max_age)
    plain = unseal(token, secret, INFO, [VERSION])
    try:
        made, length = _HEADER.unpack_from(plain)
        email = plain[_HEADER.size : _HEADER.size + length].decode()
        list_id = plain[_HEADER.size + length :].decode()
    except (ValueError, struct.error):
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
