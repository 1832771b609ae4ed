"""Sending settings from `newsletter.toml`; secrets from the environment only.

The file says how to send (relay, rate, list identity); who the issue is from is in each draft. A
missing file means the embedded defaults: the local outbox, so everything runs with no relay.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from newsletter.errors import ConfigError
from newsletter.model import Email, Line, Url

PASSWORD_ENV = "NEWSLETTER_SMTP_PASSWORD"
IMAP_PASSWORD_ENV = "NEWSLETTER_IMAP_PASSWORD"
SECRET_ENV = "NEWSLETTER_SECRET"
OUTBOX_SECRET = "outbox-only: not a secret, set NEWSLETTER_SECRET before sending to a relay"
"""Signs unsubscribe tokens in outbox runs, whose messages never leave this machine."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListSettings(Section):
    id: Line = "regional-update.wmchildrensservices.org.uk"
    """The List-Id: a domain-like name that stays the same from issue to issue."""
    name: Line = "West Midlands Regional Update"
    domain: Line = "wmchildrensservices.org.uk"
    """Our own domain, for Message-IDs and DKIM."""
    bounce_to: Email = "bounces@wmchildrensservices.org.uk"
    """The envelope sender (Return-Path): where bounces go."""
    unsubscribe_mailto: Email = "unsubscribe@wmchildrensservices.org.uk"
    unsubscribe_url: Url | None = None
    """An HTTPS base for one-click unsubscribe (RFC 8058): the token is appended."""
    archive_url: Url | None = None
    """Where `newsletter archive` output is published: the email links each issue's page and calendar files."""


class TransportSettings(Section):
    url: str = "outbox:outbox"
    """outbox:DIR, smtp://host:port (STARTTLS) or smtps://host:port (TLS)."""
    username: str | None = None
    starttls: bool | None = None
    """None: required for every host but loopback."""
    connections: Annotated[int, Field(ge=1, le=32)] = 2
    rate_per_minute: Annotated[float, Field(gt=0)] = 30
    daily_cap: Annotated[int, Field(ge=1)] | None = 10_000
    timeout: Annotated[float, Field(gt=0)] = 60
    attempts: Annotated[int, Field(ge=1, le=20)] = 6
    """Tries per recipient for temporary failures (4xx, timeouts, dropped connections)."""
    backoff: Annotated[float, Field(ge=0)] = 30
    """Seconds before the first retry; doubles each time."""


class InboxSettings(Section):
    url: str | None = None
    """imaps://host:993, imap://host:143 (STARTTLS), maildir:DIR or mbox:FILE: where replies and bounces land."""
    username: str | None = None
    folder: str = "INBOX"
    processed: str = "Processed"
    """Where understood messages are moved; nothing is ever deleted."""
    starttls: bool | None = None
    """None: required for every host but loopback."""
    timeout: Annotated[float, Field(gt=0)] = 60


class DkimSettings(Section):
    selector: str | None = None
    key_file: Path | None = None


class Settings(Section):
    list: ListSettings = ListSettings()
    transport: TransportSettings = TransportSettings()
    dkim: DkimSettings = DkimSettings()
    inbox: InboxSettings = InboxSettings()
    ledger: Path = Path("newsletter.db")
    recipients: Path = Path("recipients")

    @property
    def password(self) -> str | None:
        return os.environ.get(PASSWORD_ENV) or None

    @property
    def imap_password(self) -> str | None:
        return os.environ.get(IMAP_PASSWORD_ENV) or None

    def secret(self, required: bool | None = None) -> str:
        """The key that signs unsubscribe tokens; required for anything but the outbox."""
        secret = os.environ.get(SECRET_ENV)
        if secret:
            return secret
        if required is None:
            required = not self.transport.url.startswith("outbox:")
        if required:
            raise ConfigError(f"set {SECRET_ENV} in the environment: it signs the unsubscribe links")
        return OUTBOX_SECRET


def load_settings(path: Path = Path("newsletter.toml")) -> Settings:
    if not path.exists():
        return Settings()
    try:
        return Settings.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except ValidationError as exc:
        lines = [f"{path}: [{'.'.join(map(str, e['loc'][:-1]))}] {e['loc'][-1]}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
