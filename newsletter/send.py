"""The send job: lists -> ledger -> paced, retried hand-offs over N connections -> ledger.

Every recipient gets a ledger row before anything is sent; each hand-off is written as `sending` just
before and as its result just after, so the job can be killed at any point and run again: it resumes
where it stopped, and only messages in flight at the kill can go twice (the report names them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import fcntl
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from newsletter.archive import published
from newsletter.config import Settings
from newsletter.errors import JobError
from newsletter.ledger import Ledger, Row
from newsletter.message import Composer
from newsletter.model import Issue
from newsletter.recipients import Authority, ListSummary, gather
from newsletter.render import render
from newsletter.transport import Result, Transport, is_relay

PACE_MARGIN = 0.99
"""Pace 1 % under the relay's rate, so network jitter never pushes a window over the limit."""


@dataclasses.dataclass
class Outcome:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    recovered: int = 0
    stopped: str | None = None
    """Why the run ended early: `interrupted` or `daily cap`; None when nothing is left to try."""


class Pacer:
    """Evenly spaced hand-offs, never closer than the interval, even after the event loop was held up.

    Waiters queue on a lock and the next slot counts from the moment a hand-off was really released,
    so a late release is never followed by a catch-up burst.
    """

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / (per_minute * PACE_MARGIN)
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            delay = self.next - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.next = max(time.monotonic(), self.next) + self.interval


@contextmanager
def exclusive(ledger_path: Path) -> Iterator[None]:
    """One send job per ledger at a time: two would hand the same people to the relay."""
    with open(f"{ledger_path}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobError(f"another send is already running on {ledger_path}") from None
        yield


def queue_recipients(ledger: Ledger, issue: Issue, settings: Settings, authorities: list[Authority],
                     only: Collection[str] | None = None) -> dict[str, ListSummary]:
    """Add everyone on the lists to the ledger (once each, suppressions honoured); returns the list report."""
    summaries: dict[str, ListSummary] = {}
    people = gather(settings.recipients, authorities, ledger.suppressed(), only, summaries)
    ledger.enqueue(issue.issue, (Row(p.email, p.name, p.authority) for p in people))
    ledger.drop_suppressed(issue.issue)
    return summaries


class Job:
    """One run of sending one issue; `run` is safe to call again after any interruption."""

    def __init__(self, issue: Issue, authorities: list[Authority], ledger: Ledger, open_transport: Callable[[], Transport],
                 settings: Settings, secret: str, *, only: Collection[str] | None = None, dkim_key: bytes | None = None,
                 on_result: Callable[[Row, Result], None] | None = None) -> None:
        self.issue = issue
        self.authorities = {a.slug: a for a in authorities}
        self.ledger = ledger
        self.open_transport = open_transport
        self.settings = settings
        self.secret = secret
        self.only = set(only) if only else None
        self.dkim_key = dkim_key
        self.on_result = on_result
        self.stop = asyncio.Event()
        self.outcome = Outcome()
        self.composers: dict[str, Composer] = {}

    async def run(self) -> Outcome:
        self.outcome.recovered = self.ledger.recover(self.issue.issue)
        relay = is_relay(self.settings.transport.url)
        cap = self.settings.transport.daily_cap if relay else None
        self.cap_left = None if cap is None else cap - self.ledger.sent_since(_start_of_day())
        self.pacer = Pacer(self.settings.transport.rate_per_minute) if relay else None
        # Render now every variant that anyone is waiting for (a render mid-send would hold up the pacing);
        # a re-run with nothing left renders none. Rows only become due from pending or deferred ones.
        summary = self.ledger.summary(self.issue.issue)
        waiting = {slug for slug, row in summary.items() if row["pending"] or row["deferred"]}
        for slug in self.only or self.authorities:
            if slug in waiting:
                self._composer(slug)
        queue: asyncio.Queue[Row | None] = asyncio.Queue(maxsize=self.settings.transport.connections * 2)
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(self.settings.transport.connections)]
        try:
            await self._produce(queue)
        finally:
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        return self.outcome

    def interrupt(self) -> None:
        self.outcome.stopped = self.outcome.stopped or "interrupted"
        self.stop.set()

    def remaining(self) -> int:
        return sum(n for row in self.ledger.summary(self.issue.issue).values()
                   for status, n in row.items() if status in ("pending", "deferred"))

    async def _produce(self, queue: asyncio.Queue[Row | None]) -> None:
        while not self.stop.is_set():
            after = ""
            while not self.stop.is_set():
                rows = self.ledger.due(self.issue.issue, after, only=self.only)
                if not rows:
                    break
                after = rows[-1].email
                for row in rows:
                    if self.stop.is_set():
                        break
                    await queue.put(row)
            await queue.join()
            retry_at = self.ledger.next_retry(self.issue.issue, only=self.only)
            if retry_at is None or self.stop.is_set():
                return
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=max(retry_at - time.time(), 0) + 0.01)
            except TimeoutError:
                pass

    async def _worker(self, queue: asyncio.Queue[Row | None]) -> None:
        async with self.open_transport() as transport:
            while (row := await queue.get()) is not None:
                try:
                    if not self.stop.is_set():
                        await self._hand_off(transport, row)
                finally:
                    queue.task_done()
            queue.task_done()

    async def _hand_off(self, transport: Transport, row: Row) -> None:
        if self.cap_left is not None and self.cap_left <= 0:
            self.outcome.stopped = "daily cap"
            self.stop.set()
            return
        message = self._composer(row.authority).compose(row)
        if self.pacer:
            await self.pacer.wait()
        if self.stop.is_set():
            return
        if self.cap_left is not None:
            self.cap_left -= 1
        self.ledger.sending(self.issue.issue, row.email, message.message_id)
        result = await transport.deliver(message)
        self._record(row, result)
        if result.status != "sent" and self.cap_left is not None:
            self.cap_left += 1

    def _record(self, row: Row, result: Result) -> None:
        attempts = row.attempts + 1
        status, reply, next_try = result.status, result.reply, 0.0
        if status == "deferred":
            if attempts >= self.settings.transport.attempts:
                status, reply = "failed", f"gave up after {attempts} attempts: {reply}"
            else:
                next_try = time.time() + self.settings.transport.backoff * 2 ** (attempts - 1)
        self.ledger.finished(self.issue.issue, row.email, status, reply, next_try)
        setattr(self.outcome, status, getattr(self.outcome, status) + 1)
        if self.on_result:
            self.on_result(row, dataclasses.replace(result, status=status, reply=reply))

    def _composer(self, slug: str) -> Composer:
        if slug not in self.composers:
            rendered = render(self.issue, self.authorities[slug], web=published(self.settings, self.issue))
            self.composers[slug] = Composer(self.issue, rendered, self.settings, self.secret, dkim_key=self.dkim_key)
        return self.composers[slug]


def _start_of_day() -> float:
    today = dt.datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    return today.timestamp()
