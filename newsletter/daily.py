"""What one `newsletter daily` run did, said three ways: a short summary, an exit code, and the team's report.

The scheduler runs `daily` every day and nobody reads cron's mail, so the run keeps a record (`Run`) and
the team hears of it only when something happened: an issue started, went on or finished going out;
readers failed, with the relay's reply; readers were suppressed; readers were sent the issue again after a
run was killed (possible duplicates); mailbox messages were left for a person; a draft could not be read
or the issue due could not be sent; or a step stopped on an error. On other days the summary is one
line and nothing is mailed. The report goes through the configured transport; when that is what
failed, it is saved in the outbox folder beside the ledger instead (a Maildir any mail program opens).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email.policy
import email.utils
import mailbox
import re
import socket
import time
from collections.abc import Callable
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.inbox import Report as MailboxReport
from newsletter.ledger import Ledger, Row
from newsletter.message import Outgoing
from newsletter.send import Outcome
from newsletter.transport import Result, Transport

if TYPE_CHECKING:
    from newsletter.privacy import Tidied

DONE, NEEDS_A_PERSON, COULD_NOT_RUN = 0, 1, 2
"""The exit codes: monitoring alerts on anything but 0."""
REPORT_SECONDS = 60
"""How long handing the report to the transport may take before it counts as failed."""
FALLBACK = "outbox"
"""The Maildir beside the ledger where a report the transport would not take is saved."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclasses.dataclass
class IssueRun:
    """One issue's part of the run: who was waiting, what became of them, and the ledger afterwards."""

    issue: str
    title: str
    had_it: int
    """Readers who had it before this run: 0 means it started going out today."""
    rate_per_minute: float | None
    """The relay's pace; None for the outbox."""
    began: float = dataclasses.field(default_factory=time.monotonic)
    seconds: float = 0.0
    outcome: Outcome = dataclasses.field(default_factory=Outcome)
    counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    failures: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    """(authority, address, the relay's reply) of each reader failed in this run."""
    uncertain: list[str] = dataclasses.field(default_factory=list)
    """Readers sent the issue again because an earlier run was killed mid-hand-off: they may have two copies."""

    def result(self, row: Row, result: Result) -> None:
        """The job's callback: keep each reader failed in this run, with the reply, for the report."""
        if result.status == "failed":
            self.failures.append((row.authority, row.email, result.reply))

    def end(self, ledger: Ledger, outcome: Outcome) -> None:
        self.seconds = time.monotonic() - self.began
        self.outcome = outcome
        self.counts = ledger.summary(self.issue)
        self.uncertain = ledger.uncertain(self.issue) if outcome.recovered else []

    @property
    def left(self) -> int:
        return sum(row["pending"] + row["deferred"] + row["sending"] for row in self.counts.values())

    def state(self) -> str:
        """Started, went on or finished going out, and why it stopped when it did not finish."""
        began = "started going out" if not self.had_it and self.outcome.sent else "went on going out"
        if not self.left:
            return "started and finished going out" if began.startswith("started") else "finished going out"
        why = {
            "daily cap": "stopped at the relay's daily cap: the rest go at the next run",
            "interrupted": "was stopped before the end: the next run sends the rest",
        }
        return f"{began}; {why.get(self.outcome.stopped or '', 'stopped before the end')}"

    def pace(self) -> str:
        minutes = self.seconds / 60
        took = _duration(self.seconds)
        if not self.outcome.sent or minutes <= 0:
            return f"in {took}"
        allowed = f"; the relay allows {self.rate_per_minute:g}" if self.rate_per_minute else ""
        return f"in {took} ({self.outcome.sent / minutes:,.0f} a minute{allowed})"

    def line(self) -> str:
        failed = len(self.failures)
        return (
            f"Issue {self.issue} {self.state()}: {self.outcome.sent:,} sent, {failed:,} failed, "
            f"{self.left:,} still to send, {self.pace()}."
        )


@dataclasses.dataclass
class Run:
    """Everything one daily run did, filled in step by step by the command."""

    names: dict[str, str] = dataclasses.field(default_factory=dict)
    """Authority slug -> name, in the lists' order."""
    began: dt.datetime = dataclasses.field(default_factory=lambda: dt.datetime.now().astimezone())
    mailbox_read: bool = False
    """False when no [inbox] url is set."""
    mailbox: MailboxReport | None = None
    left_for_a_person: int = 0
    due: str | None = None
    """The issue due today, whether or not anyone was still waiting for it."""
    issue: IssueRun | None = None
    blocked: list[str] = dataclasses.field(default_factory=list)
    """Why the issue due today was not sent (errors in its draft)."""
    unreadable: list[Path] = dataclasses.field(default_factory=list)
    suppressed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    """(address, why) of each reader suppressed during the run: bounces, unsubscribes."""
    stopped: list[str] = dataclasses.field(default_factory=list)
    """One line per step that stopped on an error."""
    tidied: Tidied | None = None
    """What retention (`newsletter tidy`) put a keyed hash for; None when it did not run. Not news on its own."""

    def happened(self) -> bool:
        """Whether the team must hear of this run; an idle day is not news."""
        return bool(
            self.issue or self.suppressed or self.left_for_a_person or self.unreadable or self.blocked or self.stopped
        )

    def exit_code(self) -> int:
        if self.stopped:
            return COULD_NOT_RUN
        stuck = self.issue is not None and bool(
            self.issue.failures or (self.issue.left and self.issue.outcome.stopped != "daily cap")
        )
        if stuck or self.left_for_a_person or self.unreadable or self.blocked:
            return NEEDS_A_PERSON
        return DONE

    def summary(self) -> list[str]:
        """The run for stdout and the monitor's log: one line on an idle day; it lists no readers (the report does)."""
        if not self.happened():
            issue = f"issue {self.due} is due and everyone has it" if self.due else "no issue is due"
            return [f"Nothing to report: {issue}; {self._mailbox_words()}.", *self._retention()]
        lines = [f"Daily run: {self.headline()} (exit code {self.exit_code()}: {_MEANING[self.exit_code()]})."]
        if self.mailbox_read:
            lines.append(f"{_capital(self._mailbox_words())}.")
        if self.issue:
            lines.append(self.issue.line())
        elif self.due and self.stopped:
            lines.append(f"Issue {self.due} is due and was not sent: the next run sends it once the error is fixed.")
        lines += [f"Not sent: {why}." for why in self.blocked]
        if self.unreadable:
            lines.append(f"Drafts not read: {', '.join(str(p) for p in self.unreadable)}.")
        lines += [f"Stopped: {why}" for why in self.stopped]
        return lines + self._retention()

    def _retention(self) -> list[str]:
        """A line when retention replaced anything (quiet when it had nothing to do)."""
        return [self.tidied.line()] if self.tidied and self.tidied.total else []

    def headline(self) -> str:
        """The gist, for the report's subject: the numbers a person acts on first."""
        parts = []
        if self.stopped:
            parts.append("stopped on an error")
        if self.issue:
            parts.append(f"issue {self.issue.issue}: {self.issue.outcome.sent:,} sent")
            if self.issue.failures:
                parts.append(f"{len(self.issue.failures):,} failed")
            if self.issue.left:
                parts.append(f"{self.issue.left:,} still to send")
        if self.blocked:
            parts.append(f"issue {self.due} not sent")
        if self.suppressed:
            parts.append(f"{_count(len(self.suppressed), 'reader')} suppressed")
        if self.left_for_a_person:
            parts.append(f"{_count(self.left_for_a_person, 'mailbox message')} for you")
        if self.unreadable:
            parts.append(f"{_count(len(self.unreadable), 'draft')} not read")
        return ", ".join(parts) or "nothing to report"

    def stop(self, why: str) -> str:
        """Record a step that stopped on an error; the one line to print (a message of several lines made one)."""
        line = _CONTROL.sub(" ", why).strip()
        self.stopped.append(line)
        return line

    def _mailbox_words(self) -> str:
        if not self.mailbox_read:
            return "the reply mailbox is not read (no [inbox] url in newsletter.toml)"
        if self.mailbox is None:
            return "the reply mailbox could not be read"
        if not self.mailbox.total:
            return "the reply mailbox had nothing new"
        words = f"the reply mailbox had {self.mailbox.summary()}"
        return words + (f", {self.left_for_a_person} of them for a person" if self.left_for_a_person else "")

    def report(self, list_name: str) -> tuple[str, str]:
        """The team's email: subject and plain text, the details the summary leaves out (addresses, replies)."""
        when = f"{self.began:%A} {self.began.day} {self.began:%B %Y at %H:%M}"
        code = self.exit_code()
        body = [f"The mailing job ran on {when}: {self.headline()}.", f"Exit code {code}: {_MEANING[code]}.", ""]
        if self.stopped:
            body += ["STOPPED ON AN ERROR", *(f"  {why}" for why in self.stopped)]
            if self.due and not self.issue:
                body.append(
                    f"  Issue {self.due} is due today and nothing was sent; the next run sends it once this is fixed."
                )
            body.append("")
        if self.issue:
            body += self._issue_part(self.issue)
        for why in self.blocked:
            body += ["ISSUE NOT SENT", f"  {why}", ""]
        if self.unreadable:
            body += [
                "DRAFTS THAT COULD NOT BE READ (an issue among them would not be sent)",
                *(f"  {p}: `newsletter check {p}` lists the problems" for p in self.unreadable),
                "",
            ]
        if self.suppressed:
            body += [
                f"READERS SUPPRESSED ({len(self.suppressed)}): they get no further issue",
                *(f"  {address}  {_CONTROL.sub(' ', why)}" for address, why in self.suppressed),
                "",
            ]
        if self.mailbox_read:
            body += ["REPLY MAILBOX", f"  {_capital(self._mailbox_words())}."]
            if self.mailbox and self.left_for_a_person:
                body.append("  Left where they are, for a person to read:")
                body += [
                    f"    {_CONTROL.sub(' ', line.message)}: {line.action}"
                    for line in self.mailbox.lines
                    if not line.moved
                ]
            body.append("")
        if self._retention():
            body += ["RETENTION", *(f"  {line}" for line in self._retention()), ""]
        body += [
            "-- ",
            (
                f"{list_name}: `newsletter daily` on {socket.gethostname()}. It writes only on days when "
                "something happened."
            ),
        ]
        return f"{list_name}: {self.headline()}", "\n".join(body) + "\n"

    def _issue_part(self, issue: IssueRun) -> list[str]:
        part = [
            f"ISSUE {issue.issue}: {issue.title}",
            f"  It {issue.state()}: {issue.outcome.sent:,} sent in this run, {issue.pace()}.",
            "",
            "  Per authority, the issue so far:",
        ]
        heads = ("Sent", "Failed", "To send")
        rows = [
            (self.names.get(slug, slug), row["sent"], row["failed"], row["pending"] + row["deferred"] + row["sending"])
            for slug, row in sorted(
                issue.counts.items(),
                key=lambda kv: list(self.names).index(kv[0]) if kv[0] in self.names else len(self.names),
            )
        ]
        rows.append(("All", sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows)))
        width = max(len(r[0]) for r in rows)
        part.append(f"  {'Authority':<{width}}  " + "  ".join(f"{h:>7}" for h in heads))
        part += [f"  {name:<{width}}  " + "  ".join(f"{n:>7,}" for n in numbers) for name, *numbers in rows]
        part.append("  (Failed includes readers who bounced or were suppressed; `newsletter status` has the rest.)")
        part.append("")
        if issue.failures:
            part += [
                "  Failed in this run, with the relay's reply:",
                *(
                    f"    {self.names.get(a, a)}  {address}  {_CONTROL.sub(' ', reply)}"
                    for a, address, reply in issue.failures
                ),
                "  After fixing the cause, `newsletter send DRAFT --retry-failed` sends them again.",
                "",
            ]
        if issue.outcome.skipped:
            part += [
                (
                    f"  {issue.outcome.skipped} reader(s) unsubscribed or bounced while it was going out, and "
                    "were not sent it."
                ),
                "",
            ]
        if issue.uncertain:
            part += [
                "  In flight when an earlier run was killed, so sent again (they may have two copies):",
                *(f"    {address}" for address in issue.uncertain),
                "",
            ]
        return part


_MEANING = {DONE: "all done", NEEDS_A_PERSON: "something needs a person", COULD_NOT_RUN: "could not run"}


def left_for_a_person(report: MailboxReport, can_move: bool) -> int:
    """Messages left in the mailbox for a person. A source that cannot move (a read-only mbox) leaves every
    message, understood or not, so it counts none: the team would hear of the same mail every day."""
    return report.left if can_move else 0


def compose(run: Run, settings: Settings, dkim_key: bytes | None, note: str | None = None) -> bytes:
    """The report as a plain-text message to `notify`, from the list (Auto-Submitted: nobody's auto-reply answers)."""
    subject, body = run.report(settings.list.name)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = Address(settings.list.name, addr_spec=settings.list.bounce_to)
    message["To"] = ", ".join(settings.notify)
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(run.began)
    message["Message-ID"] = email.utils.make_msgid("daily", domain=settings.list.domain)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content((f"{note}\n\n" if note else "") + body)
    data = message.as_bytes()
    if dkim_key and settings.dkim.selector:
        import dkim

        data = (
            dkim.sign(
                data,
                settings.dkim.selector.encode(),
                settings.list.domain.encode(),
                dkim_key,
                include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
            )
            + data
        )
    return data


def send_report(
    run: Run, settings: Settings, open_transport: Callable[[], Transport] | None, dkim_key: bytes | None
) -> tuple[str | None, str | None]:
    """Mail the report to `notify`: (a line for stdout, a line for stderr), either may be None.

    Through the configured transport; when it will not take the report (the relay refused the login, say)
    the report, with a note saying why, is saved in the outbox folder beside the ledger, unless the
    transport is that same outbox.
    """
    data = compose(run, settings, dkim_key)
    message_id = _message_id(data)
    problem = "no transport" if open_transport is None else None
    if open_transport is not None:
        try:
            refused = asyncio.run(_deliver(open_transport, data, settings.list.bounce_to, settings.notify, message_id))
            problem = "; ".join(refused) or None
        except (NewsletterError, OSError, TimeoutError) as exc:
            problem = str(exc) or type(exc).__name__
    if problem is None:
        return f"Run report sent to {', '.join(settings.notify)}.", None
    problem = _CONTROL.sub(" ", problem)
    said = f"The run report could not be sent to {', '.join(settings.notify)} ({problem})"
    fallback = settings.ledger.parent / FALLBACK
    if settings.transport.url.startswith("outbox:"):
        return None, f"{said}."
    note = (
        f"This report could not be sent through {settings.transport.url}: {problem}. "
        f"It was saved in {fallback} instead."
    )
    try:
        key = mailbox.Maildir(fallback, create=True).add(compose(run, settings, dkim_key, note))
    except OSError as exc:
        return None, f"{said}, nor saved in {fallback}: {exc.strerror or exc}."
    return None, f"{said}: saved in {fallback / 'new' / key} instead."


async def _deliver(
    open_transport: Callable[[], Transport], data: bytes, sender: str, recipients: tuple[str, ...], message_id: str
) -> list[str]:
    """One hand-off per address; the addresses the transport did not take, with its reply."""
    refused = []
    async with asyncio.timeout(REPORT_SECONDS):
        async with open_transport() as transport:
            for address in recipients:
                result = await transport.deliver(Outgoing(sender, address, data, message_id, crlf=True))
                if result.status != "sent":
                    refused.append(f"{address}: {result.reply}")
    return refused


def _message_id(data: bytes) -> str:
    found = re.search(rb"^Message-ID: *(<[^>\r\n]+>)", data, re.MULTILINE | re.IGNORECASE)
    return found.group(1).decode("ascii") if found else ""


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _count(n: int, thing: str) -> str:
    """`1 reader`, `2 readers`: the subject line is read first, and the email package folds `(s)` badly."""
    return f"{n:,} {thing}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
