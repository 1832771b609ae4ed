"""Unsubscribe tokens: who and which list, signed so nobody can unsubscribe someone else.

The token rides in the List-Unsubscribe header and the footer link; `itsdangerous` signs it with the
secret from the environment and dates it, so old tokens can be refused.
"""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from newsletter.errors import BadToken

MAX_AGE = 400 * 24 * 3600
"""A token works for about a year and a month: long enough for last year's issue."""


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="newsletter-unsubscribe")


def make_token(email: str, list_id: str, secret: str) -> str:
    return _serializer(secret).dumps([email, list_id])


def read_token(token: str, secret: str, max_age: int = MAX_AGE) -> tuple[str, str]:
    """(email, list id) from a token; BadToken when it was tampered with or is too old."""
    try:
        email, list_id = _serializer(secret).loads(token, max_age=max_age)
    except SignatureExpired:
        raise BadToken("expired") from None
    except (BadSignature, ValueError, TypeError):
        raise BadToken("invalid") from None
    return str(email), str(list_id)
