"""Where messages go: a local outbox (Maildir of .eml files, the default) or an SMTP relay.

One `Transport` is one connection. The send job opens as many as it is allowed and hands each a
message at a time; a transport answers with a `Result` and never raises for a recipient's fate:
`sent`, `deferred` (try again later: 4xx, timeouts, dropped connections) or `failed` (5xx).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import mailbox
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiosmtplib

from newsletter.config import TransportSettings
from newsletter.message import Outgoing


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    status: Literal["sent", "deferred", "failed"]
    reply: str


class TransportError(Exception):
    """The transport cannot work at all (bad URL, TLS refused, login refused): stop the job, not a recipient."""


class Transport(ABC):
    async def __aenter__(self) -> Transport:
        await self.open()
        return self

    async def open(self) -> None:
        """Get ready before the first message, so pacing measures hand-offs, not handshakes."""
        return None

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        return None

    @abstractmethod
    async def deliver(self, message: Outgoing) -> Result: ...


class Outbox(Transport):
    """A Maildir: each message lands in `new/` by an atomic rename, readable by any mail program."""

    def __init__(self, directory: Path) -> None:
        self.box = mailbox.Maildir(directory, factory=None, create=True)
        self.directory = Path(directory)

    async def deliver(self, message: Outgoing) -> Result:
        key = self.box.add(message.data)
        return Result("sent", f"250 saved to {self.directory / 'new' / key}")


class Smtp(Transport):
    """One aiosmtplib connection, opened on first use and again after a drop."""

    def __init__(self, url: str, settings: TransportSettings, password: str | None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise TransportError(f"`{url}` is not a relay address: use smtp://host:587 or smtps://host:465")
        self.host = parts.hostname
        self.implicit_tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.implicit_tls else 587)
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
        client = aiosmtplib.SMTP(hostname=self.host, port=self.port, use_tls=self.implicit_tls,
                                 start_tls=self.starttls, timeout=self.timeout, tls_context=ssl.create_default_context())
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

    async def deliver(self, message: Outgoing) -> Result:
        try:
            if self.client is None or not self.client.is_connected:
                self.client = await self._connect()
            errors, reply = await self.client.sendmail(message.sender, [message.recipient], message.data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return _refused(exc.recipients[0].code, exc.recipients[0].message)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:  # the server is closing this connection
                await self._drop()
            return _refused(exc.code, exc.message)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError,
                aiosmtplib.SMTPConnectTimeoutError, aiosmtplib.SMTPReadTimeoutError, OSError, TimeoutError) as exc:
            await self._drop()
            return Result("deferred", f"connection: {type(exc).__name__}: {exc}".strip())
        return Result("sent", reply)

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

