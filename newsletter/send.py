"""The send job: lists -> ledger -> paced, retried hand-offs over N connections -> ledger.

Every recipient gets a ledger row before anything is sent; each hand-off is written as `sending` just
before and as its result just after, so the job can be killed at any point and run again: it resumes
where it stopped, and only messages in flight at the kill can go twice (the report names them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import fcntl
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.archive import published
from newsletter.config import Settings
from newsletter.errors import ConfigError, JobError, ListError, NewsletterError
from newsletter.ledger import Finished, Ledger, Row
from newsletter.message import Composer, Outgoing
from newsletter.model import Issue
from newsletter.recipients import Authority, ListSummary, gather
from newsletter.render import render
from newsletter.transport import Result, Transport, is_relay

if TYPE_CHECKING:
    from newsletter.signing import SigningProcess

Signing = asyncio.Future[list[bytes]]
_Queued = tuple[Row, Outgoing | ListError, Signing | None]
"""A reader queued for a worker, with their message (or its signature on the way, or why it cannot be written)."""

FLUSH_EVERY = 0.05
"""Seconds: the longest a finished hand-off waits to be written when no claim comes to take it along."""
PACE_MARGIN = 0.99
"""Pace 1 % under the relay's rate, so network jitter never pushes a window over the limit."""
PREFLIGHT_SECONDS = 30
"""How long the check before a send may take (connect, TLS, login) before it counts as unreachable."""
MAX_REFUSED_IN_A_ROW = 50
"""Permanent refusals running that mean the relay refuses everyone (a policy, a block), not those readers."""


@dataclasses.dataclass
class Outcome:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    recovered: int = 0
    skipped: int = 0
    """Suppressed while the run was under way, so not sent."""
    stopped: str | None = None
    """Why the run ended early: `interrupted` or `daily cap`; None when nothing is left to try."""


class Pacer:
    """Evenly spaced hand-offs, never closer than the interval, even after the event loop was held up.

    Waiters queue on a lock and the next slot counts from the moment a hand-off was really released,
    so a late release is never followed by a catch-up burst. A stop wakes every waiter at once.
    """

    def __init__(self, per_minute: float, stop: asyncio.Event) -> None:
        self.interval = 60.0 / (per_minute * PACE_MARGIN)
        self.next = 0.0
        self.lock = asyncio.Lock()
        self.stop = stop

    async def wait(self) -> None:
        async with self.lock:
            delay = self.next - time.monotonic()
            if delay > 0 and not self.stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
            self.next = max(time.monotonic(), self.next) + self.interval


@contextmanager
def exclusive(ledger_path: Path) -> Iterator[None]:
    """One send job per ledger at a time: two would hand the same people to the relay.

    The lock is named by the ledger's real path, so a symlink or `./x/../newsletter.db` finds the same lock.
    """
    real = ledger_path.resolve()
    try:
        handle = open(f"{real}.lock", "w")  # noqa: SIM115 - closed by the `with` below; only open's error is ours
    except OSError as exc:
        raise JobError(
            f"cannot lock the ledger {ledger_path}: {exc.strerror or exc} (is its folder writable?)"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobError(f"another send is already running on {real}: wait for it to finish") from None
        yield


def queue_recipients(
    ledger: Ledger, issue: Issue, settings: Settings, authorities: list[Authority], only: Collection[str] | None = None
) -> dict[str, ListSummary]:
    """Add everyone on the lists to the ledger (once each, suppressions and erasures honoured); returns the
    list report."""
    summaries: dict[str, ListSummary] = {}
    from newsletter.signup import confirmed_readers  # web sign-ups replace list rows for the same address

    joined = confirmed_readers(ledger)
    people = gather(settings.recipients, authorities, ledger.suppressed(), only, summaries, joined)
    from newsletter.privacy import without_forgotten  # erased readers back on a list: skipped, and counted

    people = without_forgotten(people, ledger, settings.secret, summaries)
    ledger.enqueue(issue.issue, (Row(p.email, p.name, p.authority) for p in people))
    ledger.drop_suppressed(issue.issue)
    return summaries


async def preflight(open_transport: Callable[[], Transport]) -> None:
    """Before anyone is queued: can the transport work at all (a writable outbox, a relay that lets us log in)?"""
    async with asyncio.timeout(PREFLIGHT_SECONDS):
        await open_transport().verify()


def due_issue(
    issues: list[Issue], today: dt.date, within_days: int, newest_started: str | None, unfinished: Collection[str] = ()
) -> tuple[Issue | None, list[tuple[Issue, str]]]:
    """The issue the unattended job sends today, if any, and why each other approved, past-dated one is not.

    Due means approved, its send date come, and no more than `within_days` ago: a new deployment whose
    drafts/ holds last year's approved issues must not mail them. An issue older than one this ledger has
    already started is never due (an October draft found after November went out). Of several due, only
    the newest goes. An issue this ledger has started and not finished (`unfinished`: stopped at a daily
    cap, say) stays due past the window, so nobody on its lists is skipped. Naming a draft sends it
    whatever this says.
    """
    due: list[Issue] = []
    passed_over: list[tuple[Issue, str]] = []
    for issue in sorted(issues, key=lambda i: i.issue):
        if issue.status != "approved" or issue.send_on > today:
            continue
        age = (today - issue.send_on).days
        if age > within_days and issue.issue not in unfinished:
            passed_over.append(
                (
                    issue,
                    f"its send date was {age} days ago (more than due_within_days = "
                    f"{within_days}); send it by name if you mean it",
                )
            )
        elif newest_started is not None and issue.issue < newest_started:
            passed_over.append(
                (
                    issue,
                    f"issue {newest_started} has already gone out and this one is older; "
                    "send it by name if you mean it",
                )
            )
        else:
            due.append(issue)
    passed_over.extend(
        (issue, f"issue {due[-1].issue} is due too and is newer; send this one by name if you mean it")
        for issue in due[:-1]
    )
    return (due[-1] if due else None), passed_over


def check_dkim_key(key_file: Path, selector: str | None, domain: str) -> bytes:
    """The DKIM key, proven to sign: a file that is not a key must stop the run before anyone is queued."""
    from newsletter.signing import Signer

    if not selector:
        raise ConfigError("[dkim] key_file is set but selector is not: set both in newsletter.toml, or neither")
    try:
        key = key_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the DKIM key {key_file}: {exc.strerror or exc}") from None
    probe = b"From: probe@" + domain.encode() + b"\r\nSubject: probe\r\n\r\nprobe\r\n"
    Signer(key, selector, domain, name=f"the DKIM key {key_file}").sign(probe)
    return key


class Job:
    """One run of sending one issue; `run` is safe to call again after any interruption.

    Failure policy: a transport's `Result` is one reader's fate and never stops the run; any exception in a
    worker (a refused login, a full disk, a bug) is a failure for everyone: all workers stop at once, rows
    already handed off are recorded, rows in flight stay `sending` for the next run to recover, and `run`
    raises one error that says why. MAX_REFUSED_IN_A_ROW permanent refusals running stop it the same way.
    """

    def __init__(
        self,
        issue: Issue,
        authorities: list[Authority],
        ledger: Ledger,
        open_transport: Callable[[], Transport],
        settings: Settings,
        secret: str,
        *,
        only: Collection[str] | None = None,
        dkim_key: bytes | None = None,
        on_result: Callable[[Row, Result], None] | None = None,
    ) -> None:
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
        self.refused_in_a_row = 0
        self.cancelled = False
        self.finished: list[Finished] = []
        """Hand-offs done but not yet in the ledger: written with the worker's next claim (group commit: a worker
        never has more than one row `sending`), or by `_flush_every` within FLUSH_EVERY seconds when the
        claim does not come (a pause for the pacing, a retry, the end)."""

    async def run(self) -> Outcome:
        self.outcome.recovered = self.ledger.recover(self.issue.issue)
        relay = is_relay(self.settings.transport.url)
        cap = self.settings.transport.daily_cap if relay else None
        self.cap_left = None if cap is None else cap - self.ledger.sent_since(_start_of_day())
        self.pacer = Pacer(self.settings.transport.rate_per_minute, self.stop) if relay else None
        # Render now every variant that anyone is waiting for (a render mid-send would hold up the pacing);
        # a re-run with nothing left renders none. Rows only become due from pending or deferred ones.
        summary = self.ledger.summary(self.issue.issue)
        waiting = {slug for slug, row in summary.items() if row["pending"] or row["deferred"]}
        for slug in self.only or self.authorities:
            if slug in waiting:
                self._composer(slug)
        queue: asyncio.Queue[_Queued | None] = asyncio.Queue(maxsize=self.settings.transport.connections * 2)
        self.task = asyncio.current_task()
        self.signing: SigningProcess | None = None
        if self.dkim_key:
            from newsletter.signing import SigningProcess

            self.signing = await SigningProcess.start([self.dkim_key])
        failed = True
        try:
            async with asyncio.TaskGroup() as group:
                workers = [group.create_task(self._worker(queue)) for _ in range(self.settings.transport.connections)]
                flusher = group.create_task(self._flush_every(FLUSH_EVERY))
                await self._produce(queue)
                # Everything queued is done, so the queue is empty: one "no more" each. Not a cancel: Python
                # 3.11's wait_for can swallow a cancel that lands while a worker is still connecting, and that
                # worker would then wait on the queue for ever.
                for _ in workers:
                    queue.put_nowait(None)
                await asyncio.wait(workers)
                flusher.cancel()
            failed = False
        except* NewsletterError as group:
            raise group.exceptions[0] from None
        except* asyncio.CancelledError:
            if not self.cancelled:
                raise
        except* Exception as group:  # noqa: BLE001 - a bug or a broken disk: one line, never a hang
            raise JobError(f"the send stopped: {_describe(group.exceptions[0])}") from None
        finally:
            self._flush(quietly=failed)
            if self.signing:
                await self.signing.close()
        return self.outcome

    def interrupt(self) -> None:
        """Ctrl-C or SIGTERM: finish the hand-offs in flight, send nothing more; a second one stops at once."""
        if self.stop.is_set() and not self.cancelled:
            self.cancelled = True
            if self.task is not None:
                self.task.cancel()
        self.outcome.stopped = self.outcome.stopped or "interrupted"
        self.stop.set()

    def remaining(self) -> int:
        return sum(
            n
            for row in self.ledger.summary(self.issue.issue).values()
            for status, n in row.items()
            if status in ("pending", "deferred")
        )

    async def _produce(self, queue: asyncio.Queue[_Queued | None]) -> None:
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
                    await queue.put(self._prepare(row))
            await queue.join()
            self._flush()
            retry_at = self.ledger.next_retry(self.issue.issue, only=self.only)
            if retry_at is None or self.stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=max(retry_at - time.time(), 0) + 0.01)

    async def _worker(self, queue: asyncio.Queue[_Queued | None]) -> None:
        async with self.open_transport() as transport:
            while (queued := await queue.get()) is not None:
                try:
                    if not self.stop.is_set():
                        await self._hand_off(transport, *queued)
                finally:
                    queue.task_done()

    def _prepare(self, row: Row) -> _Queued:
        """The reader's message, composed as it is queued. Its DKIM signature is made meanwhile by the signing
        process, so a worker seldom waits for it."""
        try:
            message = self._composer(row.authority).compose(row, sign_later=True)
        except ListError as exc:
            return row, exc, None
        if message.signature is None or self.signing is None:
            return row, message.signed(), None
        return row, message, self.signing.fields(message.signature)

    async def _hand_off(
        self, transport: Transport, row: Row, message: Outgoing | ListError, fields: Signing | None
    ) -> None:
        if isinstance(message, ListError):  # this one reader's stored address or name cannot be written
            self._record(row, Result("failed", str(message)))
            return
        if fields is not None:
            message = message.signed(await self._signature(fields))
        if self.pacer:
            await self.pacer.wait()
        if self.stop.is_set():
            return
        if self.cap_left is not None:  # checked and taken with no await between: N workers never overshoot
            if self.cap_left <= 0:
                self.outcome.stopped = "daily cap"
                self.stop.set()
                return
            self.cap_left -= 1
        (ours,) = self.ledger.record(self.issue.issue, self._take_finished(), [(row.email, message.message_id)])
        if not ours:
            self.outcome.skipped += 1  # suppressed since it was queued, or another job has it
            if self.cap_left is not None:
                self.cap_left += 1
            return
        result = await transport.deliver(message)
        self._record(row, result)
        if result.status != "sent" and self.cap_left is not None:
            self.cap_left += 1

    async def _signature(self, fields: Signing) -> list[bytes]:
        """The message's DKIM fields from the signing process, which answers in milliseconds: one that stops
        answering (stopped, stuck) ends the run after the transport's timeout, as a relay that stops would."""
        timeout = self.settings.transport.timeout
        try:
            return await asyncio.wait_for(fields, timeout)
        except TimeoutError:
            raise JobError(f"the DKIM signing process did not answer in {timeout:g} s") from None

    def _record(self, row: Row, result: Result) -> None:
        attempts = row.attempts + 1
        status, reply, next_try = result.status, result.reply, 0.0
        if status == "deferred":
            if attempts >= self.settings.transport.attempts:
                status, reply = "failed", f"gave up after {attempts} attempts: {reply}"
            else:
                next_try = time.time() + self.settings.transport.backoff * 2 ** (attempts - 1)
        self.finished.append(Finished(row.email, status, reply, next_try))
        setattr(self.outcome, status, getattr(self.outcome, status) + 1)
        if self.on_result:
            self.on_result(row, dataclasses.replace(result, status=status, reply=reply))
        self.refused_in_a_row = self.refused_in_a_row + 1 if result.status == "failed" else 0
        if self.refused_in_a_row >= MAX_REFUSED_IN_A_ROW:
            raise JobError(
                f"the relay refused {self.refused_in_a_row} readers in a row (the last: {reply}); "
                "stopped so the rest are not marked failed too. Fix the cause, then run "
                "`newsletter send DRAFT --retry-failed`"
            )

    def _take_finished(self) -> list[Finished]:
        finished, self.finished = self.finished, []
        return finished

    def _flush(self, quietly: bool = False) -> None:
        """Record the finished hand-offs not yet written. `quietly` when the run is failing already: it keeps
        its own error, and rows left `sending` are sent again by the next run, marked uncertain."""
        if not self.finished:
            return
        finished = self._take_finished()
        try:
            self.ledger.record(self.issue.issue, finished, [])
        except (sqlite3.Error, OSError, NewsletterError):
            if not quietly:
                raise

    async def _flush_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self._flush()

    def _composer(self, slug: str) -> Composer:
        if slug not in self.composers:
            rendered = render(
                self.issue, self.authorities[slug], web=published(self.settings, self.issue), settings=self.settings
            )
            self.composers[slug] = Composer(self.issue, rendered, self.settings, self.secret, dkim_key=self.dkim_key)
        return self.composers[slug]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}{f' ({exc.filename})' if exc.filename else ''}"
    return f"{type(exc).__name__}: {exc}"


def _start_of_day() -> float:
    today = dt.datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    return today.timestamp()
