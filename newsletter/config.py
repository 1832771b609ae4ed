"""Sending settings from `newsletter.toml`; secrets from the environment (or, for the outbox, a private file).

The file says how to send (relay, rate, list identity); who the issue is from is in each draft. A
missing file means the embedded defaults: the local outbox, so everything runs with no relay.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import sys
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from newsletter.errors import ConfigError
from newsletter.healthcheck import CheckInUrl
from newsletter.model import Email, Line, Sender, Url

PASSWORD_ENV = "NEWSLETTER_SMTP_PASSWORD"
IMAP_PASSWORD_ENV = "NEWSLETTER_IMAP_PASSWORD"
SECRET_ENV = "NEWSLETTER_SECRET"
SECRET_FILE = "newsletter.secret"
"""Beside the ledger: the outbox's own random secret, made on first use when NEWSLETTER_SECRET is not set."""


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
    manage_url: Url | None = None
    """The base of the "Manage your subscription" links (the token is appended); without it, `manage` beside
    `unsubscribe_url` (https://host/unsubscribe -> https://host/manage). Neither: no manage link."""

    def manage_link(self) -> str | None:
        """The base the manage links use (served by `newsletter serve`), or None without a web service."""
        if self.manage_url:
            return self.manage_url.rstrip("/")
        if not self.unsubscribe_url:
            return None
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.unsubscribe_url)
        parent = parts.path.rstrip("/").rsplit("/", 1)[0]
        return urlunsplit((parts.scheme, parts.netloc, f"{parent}/manage", "", ""))


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


def _colour(value: str) -> str:
    """`#183f6b` (or `#183F6B`, `#fff`): a colour as every mail program reads it, in lower-case six digits."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if not re.fullmatch(r"#(?:[0-9a-f]{3}){1,2}", text):
        raise ValueError(f"`{value}` is not a colour: write it as # and six hex digits, like #183f6b")
    return text if len(text) == 7 else "#" + "".join(c * 2 for c in text[1:])


Colour = Annotated[str, AfterValidator(_colour)]


class PublicationSettings(Section):
    """Who publishes the newsletter and for whom: every name the emails, archive and pages show."""

    title: Line = "Regional Update"
    """The publication's name (a draft's own `title:` replaces it in that issue's masthead)."""
    network: Line = "West Midlands children’s services network"
    """The network's name: the footer says "a member of the" network."""
    masthead: Line = "West Midlands children’s services"
    """The words beside the month under the title."""
    readers: Line = "staff"
    """Who receives it: the web version says it goes each month to them, of the N member organisations."""
    unnamed_member: Line = "an organisation in the region"
    """What "you work for ..." says in the copy meant for every member (each member's own copy names it)."""
    sender: Sender = Sender(name="West Midlands Regional Team", email="regional.update@wmchildrensservices.org.uk")
    """Who the issues are from: `newsletter init` writes it into the first draft."""
    postal_address: Line | None = None
    """Optional: shown in the footer."""
    privacy_url: Url | None = None
    """The privacy notice (UK GDPR transparency): linked from every footer."""


class LogoSettings(Section):
    url: Url
    """The logo's hosted address (https://): emails link pictures, never carry them."""
    alt: Line
    """What the logo says, for readers whose mail program blocks pictures."""
    width: Annotated[int, Field(ge=40, le=600)] = 160
    """Pixels."""


class BrandSettings(Section):
    colour: Colour = "#183f6b"
    """The masthead, buttons and headings: white text goes on it, so `check` wants 4.5:1 contrast."""
    logo: LogoSettings | None = None
    """Optional, above the title; the title stays text, for mail programs that block pictures."""


CONSENT = (
    "Yes, please email me the newsletter each month. I understand that my name, email address and organisation "
    "are kept only to send it, as the privacy notice explains, and that I can unsubscribe at any time with the "
    "link in every issue."
)
"""The sign-up form's default consent wording (UK GDPR: specific, informed, and as easy to withdraw as to give)."""


class SignupSettings(Section):
    """The web sign-up form that `newsletter serve` offers, with confirmation by email (double opt-in)."""

    url: Url | None = None
    """The sign-up page's public address; without it, `subscribe` beside `unsubscribe_url`
    (https://host/unsubscribe -> https://host/subscribe). Neither: no sign-up page."""
    consent: Line = CONSENT
    """What a reader agrees to: shown on the form, and stored with each sign-up as the wording that reader saw."""
    expiry_hours: Annotated[int, Field(ge=1, le=24 * 14)] = 48
    """How long a confirmation link works."""
    per_client_per_hour: Annotated[int, Field(ge=1)] = 20
    """Sign-up requests one client (IP address) may make in an hour; more get 429."""

    def link(self, unsubscribe_url: str | None) -> str | None:
        """The public sign-up address (confirmation links start with it), or None without a web service."""
        if self.url:
            return self.url.rstrip("/")
        if not unsubscribe_url:
            return None
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(unsubscribe_url)
        parent = parts.path.rstrip("/").rsplit("/", 1)[0]
        return urlunsplit((parts.scheme, parts.netloc, f"{parent}/subscribe", "", ""))


class Settings(Section):
    publication: PublicationSettings = PublicationSettings()
    brand: BrandSettings = BrandSettings()
    templates_dir: Path | None = None
    """Templates that replace the shipped ones of the same name (see the README for the safe blocks)."""
    list: ListSettings = ListSettings()
    transport: TransportSettings = TransportSettings()
    dkim: DkimSettings = DkimSettings()
    inbox: InboxSettings = InboxSettings()
    signup: SignupSettings = SignupSettings()
    """The web sign-up form (`newsletter serve`): its address, consent wording and limits."""
    ledger: Path = Path("newsletter.db")
    recipients: Path = Path("recipients")
    drafts: Path = Path("drafts")
    """Where `send --due` looks for the issue to send."""
    due_within_days: Annotated[int, Field(ge=0)] = 7
    """`send --due` sends an approved issue at most this many days after its send date, never last year's."""
    notify: tuple[Email, ...] = ()
    """Who gets `newsletter daily`'s run report, through the transport, on days when something happened."""
    healthcheck_url: CheckInUrl | None = None
    """A cron monitor's check-in URL, told success or failure at the end of every `newsletter daily`."""
    retention_months: Annotated[int, Field(ge=1)] = 24
    """`newsletter tidy` (run by `daily`) puts a keyed hash for addresses and names in ledger rows older than this."""

    @property
    def password(self) -> str | None:
        return os.environ.get(PASSWORD_ENV) or None

    @property
    def imap_password(self) -> str | None:
        return os.environ.get(IMAP_PASSWORD_ENV) or None

    def secret(self, required: bool | None = None) -> str:
        """The key of the unsubscribe tokens: NEWSLETTER_SECRET, or for the outbox a random one of its own.

        Never a constant: `inbox` and `serve` act on tokens, and a token checked against a published key
        could be made by anyone. Required (the variable) for anything but the outbox.
        """
        secret = os.environ.get(SECRET_ENV)
        if secret:
            return secret
        if required is None:
            required = not self.transport.url.startswith("outbox:")
        if required:
            raise ConfigError(f"set {SECRET_ENV} in the environment: it signs the unsubscribe links")
        return private_secret(self.ledger.parent / SECRET_FILE)


def private_secret(path: Path) -> str:
    """The secret in `path`, made (random, readable by the owner only) and announced on stderr the first time."""
    found = _read_secret(path)
    if found is not None:
        return found
    made = secrets.token_urlsafe(32)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(made + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(partial, path)  # appears whole or not at all, and never replaces one made meanwhile
        except FileExistsError:
            made = _read_secret(path) or made
        else:
            print(
                f"Made a secret for the unsubscribe links in {path} (readable by you only): keep it with the "
                f"ledger. Sending through a relay needs {SECRET_ENV} instead.",
                file=sys.stderr,
            )
        finally:
            partial.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot make the unsubscribe secret {path} ({exc.strerror}): check that the ledger's "
            f"folder exists and can be written, or set {SECRET_ENV}"
        ) from None
    return made


def _read_secret(path: Path) -> str | None:
    """The secret in `path` (None when there is none), refused when anyone else could read or change it."""
    problem = f"fix or delete it, or set {SECRET_ENV}"
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path} is not a file: {problem}")
        if info.st_mode & 0o077:
            raise ConfigError(
                f"{path} can be read or changed by other users: run `chmod 600 {path}` "
                "(and delete it to make a new one if someone may have read it)"
            )
        secret = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the unsubscribe secret {path} ({exc.strerror}): {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a secret this program made: {problem}") from None
    if len(secret) < 32:
        raise ConfigError(f"{path} is too short to be a secret: {problem}")
    return secret


def load_settings(path: Path = Path("newsletter.toml")) -> Settings:
    """The settings in `path`, or the defaults when there is no such file; ConfigError says what is wrong."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # Notepad may start the file with a byte-order mark
    except FileNotFoundError:
        return Settings()
    except IsADirectoryError:
        raise ConfigError(
            f"{path} is a folder: give --config the settings file, such as {path / 'newsletter.toml'}"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start + 1}): save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror}): check the path and its permissions") from None
    try:
        return Settings.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except ValidationError as exc:
        lines = [f"{path}: [{'.'.join(map(str, e['loc'][:-1]))}] {e['loc'][-1]}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
