"""DKIM private keys: reading one (RSA or Ed25519, with a clear error for anything else), and the private-key
step of a signature, which the send job runs in a child process of its own (`python -m newsletter.keys`).

The child imports only this module and `cryptography`: it starts in a third of the time `newsletter.signing`
(dkimpy, dnspython, asyncio) would take, and every send starts one.
"""

from __future__ import annotations

import base64
import os
import signal
import struct

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import (
    dsa,
    ec,
    ed448,
    ed25519,
    padding,
    rsa,
    x448,
    x25519,
)
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from newsletter.errors import ConfigError

__all__ = ["MIN_RSA_BITS", "REPLY", "REQUEST", "PrivateKey", "handover", "load_key", "serve", "sign_digest"]

MIN_RSA_BITS = 1024
"""RFC 8301: signers MUST use RSA keys of at least 1024 bits (and SHOULD use 2048)."""

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
"""The keys DKIM signs with."""
_loaded: dict[bytes, PrivateKey] = {}
_OTHER_KINDS = [
    (ec.EllipticCurvePrivateKey, "an elliptic-curve (ECDSA) key"),
    (dsa.DSAPrivateKey, "a DSA key"),
    (ed448.Ed448PrivateKey, "an Ed448 key"),
    (x25519.X25519PrivateKey, "an X25519 key"),
    (x448.X448PrivateKey, "an X448 key"),
]


def load_key(data: bytes, name: str = "the DKIM key") -> PrivateKey:
    """An RSA (at least 1024 bits) or Ed25519 private key in PEM (PKCS#1 or PKCS#8); an Ed25519 key may also be
    the base64 of its 32 bytes, as dkimpy's `dknewkey` writes it. Anything else is a ConfigError.

    OpenSSL checks an RSA key thoroughly when it reads it (about 50 ms for 2048 bits): a key already read in
    this process (by the send's preflight, by another variant's Composer) is not read again.
    """
    key = _loaded.get(data)
    if key is None:
        key = _read_key(data, name)
        if len(_loaded) < 8:
            _loaded[data] = key
    return key


def _read_key(data: bytes, name: str) -> PrivateKey:
    what = (
        "it must be an RSA private key (2048 bits) or an Ed25519 private key in PEM form, without a password"
        " (make one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`)"
    )
    text = data.strip()
    if not text:
        raise ConfigError(f"{name} is empty: {what}")
    if not text.startswith(b"-----BEGIN"):
        try:
            raw = base64.b64decode(text, validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConfigError(f"{name} is not a private key in PEM form: {what}")
        return ed25519.Ed25519PrivateKey.from_private_bytes(raw)
    try:
        key = serialization.load_pem_private_key(text, password=None)
    except TypeError:
        raise ConfigError(f"{name} is protected by a password: {what}") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        reason = str(exc).splitlines()[0].rstrip(".") if str(exc) else "it cannot be read"
        raise ConfigError(f"{name} cannot be read ({reason}): {what}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"{name} is a {key.key_size}-bit RSA key, too short to be trusted (at least"
                f" {MIN_RSA_BITS}; 2048 is usual): {what}"
            )
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    kind = next((text for cls, text in _OTHER_KINDS if isinstance(key, cls)), "a private key of another kind")
    raise ConfigError(f"{name} is {kind}, which DKIM does not sign with: {what}")


def sign_digest(key: PrivateKey, digest: bytes) -> bytes:
    """The signature of a SHA-256 digest (OpenSSL: about 250 µs for RSA-2048, 35 µs for Ed25519).

    RSA-SHA256 signs the digest as PKCS#1 v1.5 does (the same bytes as signing the data); Ed25519-SHA256
    signs the 32-byte digest itself, as RFC 8463 says.
    """
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    return key.sign(digest)


# -- the signing process's side ---------------------------------------------------------------------------

REQUEST = struct.Struct(">IB32s")
"""A request to the signing process: its number, which key, the SHA-256 digest to sign."""
REPLY = struct.Struct(">IH")
"""A reply: the request's number and the signature's length; the signature follows."""
_STDIN, _STDOUT = 0, 1
"""The signing process reads and writes them unbuffered: an answer goes as it is made, and nothing is left to
flush (or to fail) at exit."""


def handover(keys: list[bytes]) -> bytes:
    """The keys as the signing process reads them first: how many, then each one's length and bytes."""
    return struct.pack(">H", len(keys)) + b"".join(struct.pack(">I", len(key)) + key for key in keys)


def serve() -> None:
    """The child's side: read the keys, then sign each request's digest and answer, until stdin closes.

    Ctrl-C and SIGTERM reach the whole process group (a terminal, systemd): they are the job's to handle, and
    the job closes our stdin when it is done (a killed job's closes too), so the child ignores them. A job
    that is gone (killed before it handed the keys over, or while answers were on their way) ends the child
    quietly: nothing is waiting for them, and the job's own output says what happened.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        (count,) = struct.unpack(">H", _read_exactly(2))
        keys = [load_key(_read_exactly(struct.unpack(">I", _read_exactly(4))[0])) for _ in range(count)]
        pending = b""
        while chunk := os.read(_STDIN, 65536):  # whatever has arrived: one read for many requests
            pending += chunk
            whole = len(pending) - len(pending) % REQUEST.size
            for start in range(0, whole, REQUEST.size):
                number, index, digest = REQUEST.unpack_from(pending, start)
                signature = sign_digest(keys[index], digest)
                os.write(_STDOUT, REPLY.pack(number, len(signature)) + signature)  # under PIPE_BUF: all of it
            pending = pending[whole:]
    except (EOFError, BrokenPipeError):
        return


def _read_exactly(size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(_STDIN, size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


if __name__ == "__main__":
    serve()
