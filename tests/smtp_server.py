"""A real SMTP server (aiosmtpd) that records what arrives and misbehaves on purpose when told to.

`script` maps a recipient address to the answers it gets on successive attempts: `ok`, a reply such as
`451 4.7.1 try again` or `550 5.1.1 no such user` (at RCPT, or at DATA for `data:451 ...`), `421` (reply
and close), `drop` (close the connection mid-DATA), or `stall` (say nothing past the client's timeout).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


@dataclass
class Arrival:
    recipient: str
    data: bytes
    at: float

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class Handler:
    script: dict[str, list[str]] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    delay: float = 0.0
    stall: float = 3.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _next(self, address: str) -> str:
        steps = self.script.get(address.lower())
        return steps.pop(0) if steps else "ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd calls handlers by these names
        self.attempts[address.lower()] += 1
        action = self._next(address)
        session.pending = getattr(session, "pending", {})
        if action == "421":
            server.transport.close()
            return "421 4.3.2 closing connection"
        if action[:1] in "45" and action[:3].isdigit():
            return action
        session.pending[address.lower()] = action
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd calls handlers by these names
        actions = [session.pending.pop(r.lower(), "ok") for r in envelope.rcpt_tos]
        if self.delay:
            await asyncio.sleep(self.delay)
        for action in actions:
            if action == "drop":
                server.transport.close()
                return "451 dropped"
            if action == "stall":
                await asyncio.sleep(self.stall)
                server.transport.close()
                return "451 stalled"
            if action.startswith("data:"):
                return action.removeprefix("data:")
        with self.lock:
            for recipient in envelope.rcpt_tos:
                self.arrivals.append(Arrival(recipient.lower(), envelope.original_content, time.monotonic()))
        return "250 2.0.0 queued"

    def received(self, address: str) -> list[Arrival]:
        return [a for a in self.arrivals if a.recipient == address.lower()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Logins:
    """An authenticator that accepts the first `accept` logins and refuses every one after (535)."""

    def __init__(self, accept: int) -> None:
        self.accept = accept
        self.tried = 0

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.tried += 1
        return AuthResult(success=self.tried <= self.accept, handled=False)


class Server:
    """`smtp_options` go to aiosmtpd's SMTP, e.g. `authenticator=Logins(0), auth_require_tls=False`."""

    def __init__(self, handler: Handler | None = None, **smtp_options: object) -> None:
        self.handler = handler or Handler()
        self.port = free_port()
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, data_size_limit=10 * 1024 * 1024, **smtp_options
        )

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
