"""Keys derived from the secret, one per purpose, and the sealed tokens links carry.

Everything keyed (unsubscribe and confirmation tokens, the keyed hashes of addresses) comes from the one
secret (`NEWSLETTER_SECRET` or `newsletter.secret`) through HKDF with an `info` string of its own, so no
key can stand for another: a confirmation token never unsubscribes anyone, and a keyed hash says nothing
about a token. A sealed token is encrypted and authenticated (AES-SIV), URL-safe base64 grouped with `~`.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from newsletter.errors import BadToken

GROUP = 25
"""Characters of a token between two `~`. SpamAssassin reads a run of 30 to 35 letters and digits that starts
with 1 or 3 as a Bitcoin address (PDS_BTC_ID, a point towards spam); about one token in 2,500 had one."""


@functools.lru_cache(maxsize=16)
def derived_key(secret: str, info: bytes) -> bytes:
    """The 32-byte key for one purpose: the secret may be any string, a key must look random."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret.encode())


@functools.lru_cache(maxsize=16)
def _cipher(secret: str, info: bytes) -> AESSIV:
    return AESSIV(derived_key(secret, info))


def seal(plain: bytes, secret: str, info: bytes, associated: Sequence[bytes]) -> str:
    """`plain` encrypted and authenticated with `info`'s key, bound to `associated` (whose first item, the
    format's version byte, also leads the token)."""
    sealed = _cipher(secret, info).encrypt(plain, list(associated))
    text = base64.urlsafe_b64encode(associated[0] + sealed).rstrip(b"=").decode("ascii")
    return "~".join(text[start : start + GROUP] for start in range(0, len(text), GROUP))


def unseal(token: str, secret: str, info: bytes, associated: Sequence[bytes]) -> bytes:
    """What `seal` sealed; BadToken("invalid") for a token that was forged, damaged or made for another use.
    Tokens made before they were grouped (no `~`) read the same."""
    try:
        token = token.replace("~", "")
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        if raw[:1] != associated[0]:
            raise ValueError("another kind of token")
        return _cipher(secret, info).decrypt(raw[1:], list(associated))
    except (InvalidTag, ValueError, binascii.Error):
        raise BadToken("invalid") from None
