"""The `newsletter` command: what editors and the mailing job run."""

from __future__ import annotations

import datetime as dt
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from newsletter.errors import ConfigError, NewsletterError, OutputError, SpamAssassinUnavailable

if TYPE_CHECKING:  # the rest is imported where it is used: `--help` and `check` must answer at once
    from rich.progress import Task

    from newsletter.config import Settings
    from newsletter.daily import IssueRun
    from newsletter.daily import Run as DailyRun
    from newsletter.inbox import Report as InboxReport
    from newsletter.ledger import Ledger, Row
    from newsletter.load import Draft, Problem
    from newsletter.model import Issue
    from newsletter.recipients import Authority, ListSummary
    from newsletter.send import Job, Outcome
    from newsletter.transport import Result, Transport


class App(typer.Typer):
    """The command, with one place that turns every error a user can cause into one line and an exit code."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except NewsletterError as exc:
            errors.print(escape(str(exc)))
            sys.exit(exc.exit_code)
        except sqlite3.Error as exc:
            errors.print(escape(f"the ledger could not be used: {exc}"))
            sys.exit(2)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            errors.print(escape(f"{exc.strerror or exc}{where}"))
            sys.exit(2)
        except KeyboardInterrupt:
            errors.print("Stopped.")
            sys.exit(130)


app = App(
    help="A network's email newsletter: check, render and send an issue to every member's list.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
"""Plain help (no markup mode): help text is shown as written, `[inbox]` included, with no type labels."""


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"newsletter {version('newsletter')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    """A network's email newsletter: check, render and send an issue to every member's list."""


console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)

WARN_BYTES = 90 * 1024
PROGRESS_LINE_SECONDS = 60
"""Without a terminal (cron, systemd), a send says how far it has got this often."""

DEFAULT_CONFIG = Path("newsletter.toml")
Config = Annotated[Path, typer.Option("--config", help="Sending settings (TOML).")]


def settings_or_exit(path: Path) -> Settings:
    from newsletter.config import load_settings

    if path != DEFAULT_CONFIG and not path.exists():  # a mistyped --config must not silently mean the defaults
        errors.print(
            f"--config {path}: there is no such file (without --config, newsletter.toml is read if it "
            "exists, else the built-in defaults)"
        )
        raise typer.Exit(2)
    try:
        return load_settings(path)
    except ConfigError as exc:
        errors.print(escape(str(exc)))
        raise typer.Exit(2) from None


def authorities(folder: Path) -> dict[str, Authority]:
    from newsletter.recipients import load_authorities

    return {a.slug: a for a in load_authorities(folder / "authorities.yaml")}


def known_authority(slug: str, known: dict[str, Authority]) -> Authority:
    import difflib

    if slug not in known:
        guess = difflib.get_close_matches(slug, list(known), n=1)
        hint = f"did you mean `{guess[0]}`?" if guess else f"use one of {', '.join(known)}"
        errors.print(f"`{slug}` is not an authority: {hint}")
        raise typer.Exit(2)
    return known[slug]


def output_folder(out: Path) -> Path:
    """The --out folder, made if need be; one clear line when it cannot be (a file of that name, no permission)."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file: name a folder (it is made if it does not exist)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".newsletter-write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    return out


def report(problems: list[Problem]) -> None:
    for problem in problems:
        style = "red" if problem.severity == "error" else "yellow"
        errors.print(
            f"{problem.file}:{problem.line}:{problem.column}: [{style}]{problem.severity}[/]: "
            f"{escape(problem.message)}",
            markup=True,
            soft_wrap=True,
        )


def open_draft(path: Path, known: dict[str, Authority]) -> Draft:
    """Load a draft or stop with its problems listed: the one way every command reads a draft."""
    from newsletter.load import DraftError, load_draft

    try:
        return load_draft(path, known)
    except DraftError as exc:
        report(exc.problems)
        errors.print(f"{path}: {len(exc.problems)} problem(s) to fix before this draft can be used.")
        raise typer.Exit(1) from None


@app.command()
def check(
    drafts: Annotated[list[Path], typer.Argument(help="Draft YAML files.")],
    strict: Annotated[bool, typer.Option("--strict", help="Fail on warnings too (for the mailing job).")] = False,
    spam: Annotated[bool, typer.Option("--spam", help="Score one real message with SpamAssassin.")] = False,
    config: Config = Path("newsletter.toml"),
) -> None:
    """Validate drafts and list what a careful editor would fix: exit 1 on errors (and warnings with --strict)."""
    settings = settings_or_exit(config)
    known = authorities(settings.recipients)
    failed = 0
    for path in drafts:
        try:
            draft = open_draft(path, known)
        except typer.Exit:
            failed += 1
            continue
        problems = content_warnings(draft, known, settings, config)
        report(problems)
        wrong = sum(p.severity == "error" for p in problems)
        failed += bool(wrong or (problems and strict))
        if wrong:
            verdict = f"[red]{wrong} error(s)[/], {len(problems) - wrong} warning(s)"
        else:
            verdict = "[green]ok[/]" if not problems else f"[yellow]ok, {len(problems)} warning(s)[/]"
        console.print(f"{path}: {verdict}")
        if spam:
            failed += not _spam_score(draft.issue, known, settings)
    raise typer.Exit(1 if failed else 0)


def _spam_score(issue: Issue, known: dict[str, Authority], settings: Settings) -> bool:
    """Print SpamAssassin's verdict on one real message of the issue; False when it looks like spam."""
    from rich.table import Table

    from newsletter.archive import published
    from newsletter.message import Composer
    from newsletter.recipients import Recipient
    from newsletter.render import render
    from newsletter.spam import score

    authority = next(iter(known.values()))
    composer = Composer(
        issue,
        render(issue, authority, web=published(settings, issue), settings=settings),
        settings,
        settings.secret(required=False),
    )
    message = composer.compose(
        Recipient(f"sample.reader@{authority.slug}.example.org", "Sample Reader", authority.slug)
    )
    try:
        result = score(message.data)
    except SpamAssassinUnavailable as exc:
        errors.print(f"[yellow]warning[/]: {exc}; the spam check was skipped.")
        return True
    table = Table(title=f"SpamAssassin: {result.points:.1f} points ({result.required:.1f} or more is spam)")
    for heading in ("Points", "Rule", "What it means"):
        table.add_column(heading)
    for name, points, description in result.rules:
        table.add_row(f"{points:.1f}", name, escape(description))
    console.print(table)
    if result.bad_rules:
        errors.print(
            f"[red]error[/]: the message breaks rules a well-formed message never hits: {', '.join(result.bad_rules)}"
        )
    return result.points < 1.0 and not result.bad_rules


def content_warnings(
    draft: Draft, known: dict[str, Authority], settings: Settings, config: Path = DEFAULT_CONFIG
) -> list[Problem]:
    """The content checks, with the size of the largest variant of the HTML; then newsletter.toml's identity."""
    from newsletter.checks import check as check_content
    from newsletter.checks import check_attachments_published
    from newsletter.render import identity_problems, render

    targeted = {slug for section in draft.issue.sections for slug in section.audience or []}
    sizes = [
        render(draft.issue, known.get(slug) if slug else None, settings=settings).size
        for slug in [None, *sorted(targeted)]
    ]
    return sorted(
        check_content(draft, max(sizes)) + check_attachments_published(draft, settings.list.archive_url),
        key=lambda p: (p.line, p.column),
    ) + identity_problems(settings, config, draft.issue)


@app.command("render")
def render_command(
    draft: Annotated[Path, typer.Argument(help="Draft YAML file.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for email.html and email.txt.")],
    authority: Annotated[str | None, typer.Option("--authority", help="Render this authority's variant.")] = None,
    config: Config = Path("newsletter.toml"),
) -> None:
    """Write the HTML and text parts of one variant of the issue."""
    from newsletter.render import GMAIL_CLIP_BYTES, render_sample

    settings = settings_or_exit(config)
    known = authorities(settings.recipients)
    variant = known_authority(authority, known) if authority is not None else None
    issue = open_draft(draft, known).issue
    rendered = render_sample(issue, variant, settings)
    output_folder(out)
    (out / "email.html").write_text(rendered.html, encoding="utf-8")
    (out / "email.txt").write_text(rendered.text, encoding="utf-8")
    size = rendered.size / 1024
    console.print(f"{out / 'email.html'}: {size:.1f} KB of HTML (Gmail clips at {GMAIL_CLIP_BYTES // 1024} KB)")
    console.print(f"{out / 'email.txt'}: {len(rendered.text.encode()) / 1024:.1f} KB of text")
    console.print(f"The {rendered.note}.")
    if rendered.size > WARN_BYTES:
        errors.print(
            f"[yellow]warning[/]: the HTML is {size:.1f} KB; above {WARN_BYTES // 1024} KB Gmail may "
            "clip it soon. Move some items to the web archive or shorten them."
        )


@app.command()
def send(
    drafts: Annotated[list[Path] | None, typer.Argument(help="The approved draft to send.")] = None,
    authority: Annotated[list[str] | None, typer.Option("--authority", help="Only these authorities' lists.")] = None,
    transport: Annotated[
        str | None, typer.Option("--transport", help="outbox:DIR, smtp://host:port or smtps://host:port")
    ] = None,
    rate: Annotated[float | None, typer.Option("--rate", help="Messages per minute the relay allows.")] = None,
    connections: Annotated[int | None, typer.Option("--connections", help="SMTP connections at once.")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Try the failed recipients again.")] = False,
    due: Annotated[
        bool, typer.Option("--due", help="Send the approved issue in drafts/ whose send date has just come (for cron).")
    ] = False,
    mark_sent: Annotated[
        bool, typer.Option("--mark-sent", help="Record the issue as already delivered by other means; send nothing.")
    ] = False,
    config: Config = Path("newsletter.toml"),
) -> None:
    """Send an approved issue to every recipient once; safe to stop and run again."""
    import asyncio

    from newsletter.send import exclusive, preflight, queue_recipients
    from newsletter.transport import opener

    settings = _with_overrides(settings_or_exit(config), url=transport, rate_per_minute=rate, connections=connections)
    known = authorities(settings.recipients)
    for slug in authority or []:
        known_authority(slug, known)
    if due == bool(drafts):
        errors.print("Name the draft to send, or use --due (not both).")
        raise typer.Exit(2)
    if mark_sent and (due or retry_failed):
        errors.print("--mark-sent records a named draft as sent: use it without --due or --retry-failed.")
        raise typer.Exit(2)
    named = [open_draft(path, known) for path in drafts or []]
    issues = [draft.issue for draft in named]
    if mark_sent:
        with exclusive(settings.ledger), _ledger(settings) as ledger:
            for issue in issues:
                queue_recipients(ledger, issue, settings, list(known.values()), authority)
                count = ledger.mark_sent(issue.issue, "marked as sent: delivered by other means")
                console.print(
                    f"Issue {issue.issue}: {count} reader(s) recorded as having it already; nothing was sent."
                )
        return
    for draft in named:
        _refuse_unapproved(draft.issue)
        _refuse_check_errors(draft, known, settings)
    # Everything that can be checked before anyone is queued: the secret, the transport, the DKIM key.
    open_transport = opener(settings.transport.url, settings.transport, settings.password)
    secret = settings.secret()
    dkim_key = _dkim_key(settings)
    with exclusive(settings.ledger), _ledger(settings) as ledger:
        broken = False
        if due:
            issues, broken = _due_issues(known, settings, ledger)
            if not issues:
                raise typer.Exit(1 if broken else 0)
        asyncio.run(preflight(open_transport))
        failed = broken
        for issue in issues:
            failed |= _send_one(
                ledger,
                issue,
                known,
                settings,
                authority,
                retry_failed,
                open_transport,
                secret,
                dkim_key,
                rate_from="--rate" if rate else "newsletter.toml" if config.exists() else "the default",
            )
    raise typer.Exit(1 if failed else 0)


@app.command()
def daily(config: Config = DEFAULT_CONFIG) -> None:
    """What the scheduler runs each day: read the reply mailbox, send the issue that is due, tell the team.

    One lock for the whole run. Ends with a short summary (one line on an idle day) and, when something
    happened, a report to `notify`. Exit code 0 all done, 1 something needs a person, 2 could not run.
    """
    from newsletter.daily import Run, send_report
    from newsletter.healthcheck import check_in
    from newsletter.send import exclusive
    from newsletter.transport import opener

    settings = settings_or_exit(config)
    run = Run()
    open_transport: Callable[[], Transport] | None = None
    dkim_key: bytes | None = None
    try:
        known = authorities(settings.recipients)
        run.names = {slug: authority.name for slug, authority in known.items()}
        open_transport = opener(settings.transport.url, settings.transport, settings.password)
        secret = settings.secret()
        dkim_key = _dkim_key(settings)
        with exclusive(settings.ledger), _ledger(settings) as ledger:
            before = ledger.suppressed()
            try:
                _daily_inbox(ledger, settings, secret, run)
                _daily_send(
                    ledger,
                    known,
                    settings,
                    open_transport,
                    secret,
                    dkim_key,
                    run,
                    "newsletter.toml" if config.exists() else "the default",
                )
                from newsletter.privacy import tidy as tidy_rows  # retention: under the same lock, after the send

                run.tidied = tidy_rows(ledger, secret, settings.retention_months)
            finally:
                run.suppressed = [(e, ledger.suppression(e) or "") for e in sorted(ledger.suppressed() - before)]
    except NewsletterError as exc:
        errors.print(escape(run.stop(str(exc))))
    except sqlite3.Error as exc:
        errors.print(escape(run.stop(f"the ledger could not be used: {exc}")))
    except TimeoutError:
        errors.print(escape(run.stop("the relay or the mailbox did not answer in time")))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        errors.print(escape(run.stop(f"{exc.strerror or exc}{where}")))
    for line in run.summary():
        console.print(line, markup=False)
    if run.happened() and settings.notify:
        said, problem = send_report(run, settings, open_transport, dkim_key)
        if said:
            console.print(said, markup=False)
        if problem:
            errors.print(escape(problem))
    if settings.healthcheck_url:
        problem = check_in(settings.healthcheck_url, run.exit_code() == 0, "\n".join(run.summary()))
        if problem:
            errors.print(escape(f"{problem} (the run's exit code is unchanged)"))
    raise typer.Exit(run.exit_code())


def _daily_inbox(ledger: Ledger, settings: Settings, secret: str, run: DailyRun) -> None:
    """Bounces and unsubscribes first, so today's send honours them. A mailbox that cannot be read stops this
    step only: the issue still goes on its day, to everyone not already suppressed."""
    from newsletter.daily import left_for_a_person
    from newsletter.inbox import InboxError, open_source, process

    inbox = settings.inbox
    if not inbox.url:
        return
    run.mailbox_read = True
    try:
        box = open_source(
            inbox.url,
            username=inbox.username,
            password=settings.imap_password,
            folder=inbox.folder,
            processed=inbox.processed,
            starttls=inbox.starttls,
            timeout=inbox.timeout,
        )
        with box:
            done = process(box, ledger, secret, settings.list.id, domain=settings.list.domain)
    except (InboxError, OSError) as exc:  # OSError: a Maildir on a full or read-only disk
        run.mailbox = getattr(exc, "report", None)
        errors.print(escape(run.stop(f"the reply mailbox: {getattr(exc, 'strerror', None) or exc}")))
        return
    run.mailbox = done
    run.left_for_a_person = left_for_a_person(done, box.can_move)
    if done.total:
        _print_inbox(done)


def _daily_send(
    ledger: Ledger,
    known: dict[str, Authority],
    settings: Settings,
    open_transport: Callable[[], Transport],
    secret: str,
    dkim_key: bytes | None,
    run: DailyRun,
    rate_from: str,
) -> None:
    """The issue due today, if anyone is still waiting for it; on other days nothing is checked, sent or said."""
    import asyncio

    from newsletter.send import due_issue, preflight, queue_recipients

    found, run.unreadable = _read_drafts(known, settings)
    chosen, _ = due_issue(
        [d.issue for d in found.values()],
        dt.date.today(),
        settings.due_within_days,
        ledger.newest_issue(),
        ledger.unfinished_issues(),
    )
    if chosen is None:
        return
    run.due = chosen.issue
    if ledger.summary(chosen.issue):  # started already: anyone new on the lists, or left by an earlier run?
        queue_recipients(ledger, chosen, settings, list(known.values()))
        if not any(row["pending"] + row["deferred"] + row["sending"] for row in ledger.summary(chosen.issue).values()):
            return
    draft = found[chosen.issue]
    if wrong := _check_errors(draft, known, settings):
        run.blocked.append(
            f"issue {chosen.issue} is due, but {draft.path} has {wrong} error(s) to fix first: "
            f"`newsletter check {draft.path}` lists them"
        )
        return
    asyncio.run(preflight(open_transport))
    _send_one(ledger, chosen, known, settings, None, False, open_transport, secret, dkim_key, rate_from, run)


def _with_overrides(settings: Settings, **changes: object) -> Settings:
    """The transport settings with the command line's values, checked like the file's (so `--rate -5` is refused)."""
    from pydantic import ValidationError

    from newsletter.config import TransportSettings

    given = {k: v for k, v in changes.items() if v is not None}
    if not given:
        return settings
    try:
        checked = TransportSettings.model_validate({**settings.transport.model_dump(), **given})
    except ValidationError as exc:
        names = {"url": "--transport", "rate_per_minute": "--rate", "connections": "--connections"}
        first = exc.errors()[0]
        raise ConfigError(f"{names.get(str(first['loc'][0]), first['loc'][0])}: {first['msg']}") from None
    return settings.model_copy(update={"transport": checked})


def _ledger(settings: Settings) -> Ledger:
    from newsletter.ledger import Ledger

    ledger = Ledger(settings.ledger)
    if ledger.created:
        errors.print(f"No send history at {settings.ledger}: starting one.")
    return ledger


def _refuse_unapproved(issue: Issue) -> None:
    if issue.status != "approved":
        errors.print(
            f"Issue {issue.issue} is a draft (status: {issue.status}). When it has been approved, change "
            "the line `status: draft` to `status: approved` in the draft and send again."
        )
        raise typer.Exit(1)


def _refuse_check_errors(draft: Draft, known: dict[str, Authority], settings: Settings) -> None:
    """`send` stops on any error `check` finds (a missing attachment, say); warnings are counted, not repeated."""
    if _check_errors(draft, known, settings):
        raise typer.Exit(1)


def _check_errors(draft: Draft, known: dict[str, Authority], settings: Settings) -> int:
    """The errors `check` finds, listed on stderr and counted; warnings only counted, on stdout."""
    problems = content_warnings(draft, known, settings)
    wrong = [p for p in problems if p.severity == "error"]
    if wrong:
        report(wrong)
        errors.print(f"{draft.path}: {len(wrong)} error(s) to fix before this issue can be sent.")
    elif problems:
        console.print(f"{draft.path}: {len(problems)} warning(s); `newsletter check {draft.path}` lists them.")
    return len(wrong)


def _dkim_key(settings: Settings) -> bytes | None:
    """The DKIM key, proven to sign before anyone is queued."""
    from newsletter.send import check_dkim_key

    if not settings.dkim.key_file:
        return None
    return check_dkim_key(settings.dkim.key_file, settings.dkim.selector, settings.list.domain)


def _read_drafts(known: dict[str, Authority], settings: Settings) -> tuple[dict[str, Draft], list[Path]]:
    """Every draft in drafts/ by issue, and those that could not be read (their problems listed on stderr)."""
    from newsletter.load import DraftError, load_draft

    found: dict[str, Draft] = {}
    unreadable: list[Path] = []
    for path in sorted(settings.drafts.glob("*.yaml")):
        try:
            draft = load_draft(path, known)
            found[draft.issue.issue] = draft
        except DraftError as exc:
            report(exc.problems)
            errors.print(f"{path}: not read, so not sent even if it is due: fix the problems above.")
            unreadable.append(path)
    return found, unreadable


def _due_issues(known: dict[str, Authority], settings: Settings, ledger: Ledger) -> tuple[list[Issue], bool]:
    """The one issue the unattended job should send today (or none), saying why each other candidate is not sent;
    and whether a draft could not be read."""
    from newsletter.send import due_issue

    found, unreadable = _read_drafts(known, settings)
    broken = bool(unreadable)
    chosen, passed_over = due_issue(
        [d.issue for d in found.values()],
        dt.date.today(),
        settings.due_within_days,
        ledger.newest_issue(),
        ledger.unfinished_issues(),
    )
    for issue, why in passed_over:
        console.print(f"Issue {issue.issue}: not sent: {why}.")
    if chosen is None:
        console.print("No approved issue is due today.")
        return [], broken
    _refuse_check_errors(found[chosen.issue], known, settings)
    return [chosen], broken


def _send_one(
    ledger: Ledger,
    issue: Issue,
    known: dict[str, Authority],
    settings: Settings,
    only: list[str] | None,
    retry_failed: bool,
    open_transport: Callable[[], Transport],
    secret: str,
    dkim_key: bytes | None,
    rate_from: str,
    run: DailyRun | None = None,
) -> bool:
    """Send one issue; True when something is left failed or unsent.

    With `run` (`newsletter daily`), nothing at all is said when nobody is waiting for the issue, and what
    happened is recorded in `run` for the team's report.
    """
    from newsletter.send import PACE_MARGIN, Job, queue_recipients
    from newsletter.transport import is_relay

    members = list(known.values())
    summaries = queue_recipients(ledger, issue, settings, members, only)
    for summary in summaries.values():
        for problem in summary.problems:
            errors.print(escape(str(problem)))
    if retry_failed:
        console.print(f"{ledger.retry_failed(issue.issue)} failed recipient(s) will be tried again.")
    job = Job(issue, members, ledger, open_transport, settings, secret, only=only, dkim_key=dkim_key)
    total = job.remaining()
    watch = None
    if run is not None:
        watch = _watch(run, ledger, issue, settings)
        if watch is None:
            return False
        job.on_result = watch.result
    if is_relay(settings.transport.url) and total:
        per_minute = settings.transport.rate_per_minute
        console.print(
            f"Issue {issue.issue}: paced at {per_minute:g} a minute ({rate_from}): about "
            f"{_duration(total / (per_minute * PACE_MARGIN) * 60)} for {total:,} reader(s)."
        )
    try:
        outcome = _run_with_progress(job, total)
    finally:
        if watch is not None:
            watch.end(ledger, job.outcome)
        _print_status(ledger, issue, known)
    if outcome.recovered:
        console.print(
            f"[yellow]{outcome.recovered} message(s) were in flight when the last run stopped "
            "and were sent again: those people may have two copies (`newsletter status`).[/]"
        )
    if outcome.skipped:
        console.print(
            f"{outcome.skipped} reader(s) were not sent the issue: they were suppressed (unsubscribed or "
            "bounced) while it was going out."
        )
    if outcome.stopped == "daily cap":
        console.print(
            f"[yellow]Stopped at the daily cap of {settings.transport.daily_cap}: run again "
            "tomorrow to send the rest.[/]"
        )
    elif outcome.stopped == "interrupted":
        console.print("[yellow]Stopped. Run the same command again to send the rest.[/]")
    return job.remaining() > 0 or outcome.failed > 0


def _watch(run: DailyRun, ledger: Ledger, issue: Issue, settings: Settings) -> IssueRun | None:
    """The daily run's record of this issue, or None when nobody is waiting for it (rows left in flight by a
    killed run count: the job sends them again)."""
    from newsletter.daily import IssueRun
    from newsletter.transport import is_relay

    counts = ledger.summary(issue.issue).values()
    waiting = sum(row["pending"] + row["deferred"] + row["sending"] for row in counts)
    if not waiting:
        return None
    rate = settings.transport.rate_per_minute if is_relay(settings.transport.url) else None
    run.issue = IssueRun(issue.issue, f"{issue.title}, {issue.edition_label}", sum(row["sent"] for row in counts), rate)
    return run.issue


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _run_with_progress(job: Job, total: int) -> Outcome:
    """The job under a progress bar on a terminal, or a line a minute in a log; Ctrl-C and SIGTERM stop it."""
    import asyncio

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{task.speed * 60:,.0f}/min" if task.speed else "–/min")

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"Sending {job.issue.issue}", total=total)
        started = last_line = time.monotonic()
        listener = job.on_result  # the daily run's record, when there is one

        def advance(row: Row, result: Result) -> None:
            nonlocal last_line
            if listener is not None:
                listener(row, result)
            if result.status == "deferred":
                return
            progress.advance(task)
            now = time.monotonic()
            if not console.is_terminal and now - last_line >= PROGRESS_LINE_SECONDS:
                last_line = now
                done = int(progress.tasks[0].completed)
                left = (total - done) * (now - started) / done
                console.print(f"{done:,} of {total:,} done, about {_duration(left)} left")

        job.on_result = advance

        async def main() -> Outcome:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, job.interrupt)
            return await job.run()

        return asyncio.run(main())


def _print_status(ledger: Ledger, issue: Issue, known: dict[str, Authority]) -> None:
    from rich.table import Table

    summary = ledger.summary(issue.issue)
    table = Table(title=f"{issue.title}, {issue.month_label}")
    table.add_column("Authority")
    for heading in ("sent", "pending", "deferred", "failed", "uncertain"):
        table.add_column(heading.capitalize(), justify="right")
    totals = dict.fromkeys(("sent", "pending", "deferred", "failed", "uncertain"), 0)
    for slug, authority in known.items():
        row = summary.get(slug)
        if not row:
            continue
        row = {**row, "pending": row["pending"] + row["sending"]}
        table.add_row(authority.name, *(str(row[k]) for k in totals))
        for k in totals:
            totals[k] += row[k]
    table.add_row("[bold]All[/]", *(f"[bold]{v}[/]" for v in totals.values()))
    console.print(table)


@app.command()
def status(
    draft: Annotated[Path, typer.Argument(help="The draft whose sending to report.")],
    failed: Annotated[bool, typer.Option("--failed", help="List failures with the server's reply.")] = False,
    config: Config = Path("newsletter.toml"),
) -> None:
    """Who has the issue, per authority, from the ledger."""
    from newsletter.ledger import Ledger

    settings = settings_or_exit(config)
    known = authorities(settings.recipients)
    issue = open_draft(draft, known).issue
    with Ledger(settings.ledger, create=False) as ledger:
        _print_status(ledger, issue, known)
        uncertain = ledger.uncertain(issue.issue)
        if uncertain:
            console.print(
                f"[yellow]In flight when a run was killed, sent again (may have two copies):[/] {', '.join(uncertain)}"
            )
        if failed:
            failures = list(ledger.failures(issue.issue))
            for failure in failures:
                console.print(
                    f"{failure.authority}\t{failure.email}\t{failure.status}\t{failure.attempts} "
                    f"attempt(s)\t{escape(failure.reply)}"
                )
            if not failures:
                console.print(f"No failures for issue {issue.issue}.")


recipients_app = typer.Typer(help="The authority recipient lists.", no_args_is_help=True)
app.add_typer(recipients_app, name="recipients")


@recipients_app.command("check")
def recipients_check(config: Config = Path("newsletter.toml")) -> None:
    """Read every list and report, per authority, valid, invalid, duplicate and suppressed rows."""
    from rich.table import Table

    from newsletter.ledger import Ledger
    from newsletter.recipients import gather

    settings = settings_or_exit(config)
    known = authorities(settings.recipients)
    suppressed: set[str] = set()
    if settings.ledger.exists():
        with Ledger(settings.ledger) as ledger:
            suppressed = ledger.suppressed()
    summaries: dict[str, ListSummary] = {}
    for _ in gather(settings.recipients, list(known.values()), suppressed, None, summaries):
        pass
    table = Table(title=f"Recipient lists in {settings.recipients}")
    for heading in ("Authority", "Valid", "Invalid", "Duplicates", "Suppressed"):
        table.add_column(heading, justify="left" if heading == "Authority" else "right")
    has_errors = False
    for summary in summaries.values():
        table.add_row(
            summary.authority.slug,
            str(summary.valid),
            str(summary.invalid),
            str(summary.duplicates),
            str(summary.suppressed),
        )
        for problem in summary.problems:
            has_errors |= problem.severity == "error"
            errors.print(escape(str(problem)))
    console.print(table)
    raise typer.Exit(1 if has_errors else 0)


@app.command()
def preview(
    draft: Annotated[Path, typer.Argument(help="The draft to preview.")],
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 8025,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser.")] = False,
    config: Config = Path("newsletter.toml"),
) -> None:
    """Show the issue in the browser at desktop and phone width; it reloads when the draft is saved."""
    from newsletter.preview import open_browser, serve

    if not 1 <= port <= 65535:
        errors.print(f"--port {port} is not a port: use a number from 1 to 65535, such as 8025.")
        raise typer.Exit(2)

    def ready(url: str) -> None:
        console.print(f"Previewing {draft} at {url} (only on this computer). Save the file to update; Ctrl-C to stop.")
        if not no_browser:
            open_browser(url)

    try:
        settings = settings_or_exit(config)
        serve(draft, authorities(settings.recipients), port=port, ready=ready, settings=settings)
    except OSError as exc:
        errors.print(f"Cannot listen on port {port}: {exc.strerror}. Try another with --port.")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


@app.command()
def proof(
    draft: Annotated[Path, typer.Argument(help="The draft to proof.")],
    to: Annotated[list[str], typer.Option("--to", help="Send the proof to this address (repeat for more).")],
    authority: Annotated[str | None, typer.Option("--authority", help="Only this authority's variant.")] = None,
    transport: Annotated[
        str | None, typer.Option("--transport", help="outbox:DIR, smtp://host:port or smtps://host:port")
    ] = None,
    config: Config = Path("newsletter.toml"),
) -> None:
    """Send "[PROOF]" copies to a few people: one per different variant, or one authority's. No ledger, no lists."""
    import asyncio

    from email_validator import EmailNotValidError

    from newsletter.archive import published
    from newsletter.message import Composer
    from newsletter.model import ascii_address
    from newsletter.recipients import Recipient
    from newsletter.render import render
    from newsletter.send import preflight
    from newsletter.transport import opener

    settings = _with_overrides(settings_or_exit(config), url=transport)
    known = authorities(settings.recipients)
    if authority is not None:
        known_authority(authority, known)
    try:
        addresses = [ascii_address(a) for a in to]
    except EmailNotValidError as exc:
        errors.print(f"Not an email address: {exc}")
        raise typer.Exit(2) from None
    issue = open_draft(draft, known).issue
    variants = [known[authority]] if authority else _distinct_variants(issue, known)
    open_transport = opener(settings.transport.url, settings.transport, settings.password)
    secret = settings.secret()
    asyncio.run(preflight(open_transport))

    async def main() -> int:
        failures = 0
        async with open_transport() as transport:
            for variant in variants:
                rendered = render(issue, variant, web=published(settings, issue), settings=settings)
                composer = Composer(issue, rendered, settings, secret, proof=True)
                for address in addresses:
                    result = await transport.deliver(composer.compose(Recipient(address, "", variant.slug)))
                    failures += result.status != "sent"
                    console.print(f"{variant.name} -> {address}: {result.status} ({escape(result.reply)})")
        return failures

    raise typer.Exit(1 if asyncio.run(main()) else 0)


def _distinct_variants(issue: Issue, known: dict[str, Authority]) -> list[Authority]:
    """One authority for each different set of sections: most issues have one variant, not sixteen."""
    seen: dict[tuple[int, ...], Authority] = {}
    for authority in known.values():
        seen.setdefault(tuple(id(s) for s in issue.for_authority(authority.slug)), authority)
    return list(seen.values())


@app.command()
def new(
    month: Annotated[str | None, typer.Argument(help="The new issue's month, like 2025-10 (default: next).")] = None,
    drafts: Annotated[Path, typer.Option("--drafts", help="The drafts folder.")] = Path("drafts"),
) -> None:
    """Start next month's draft from the latest one."""
    from newsletter.new_issue import create

    made = create(drafts, month)
    console.print(
        f"Created {made.path} from {made.source}: the sections are kept as a starting point, the status "
        "is back to draft, and the month, send date and subject are moved on a month."
    )
    if made.weekend and made.send_on:
        console.print(
            f"The same day of the new month, {made.weekend:%A %-d %B}, is a weekend: the send date is "
            f"{made.send_on:%A %-d %B} instead."
        )
    if made.removed:
        console.print("Left out because they will be over by the send date:")
        for title in made.removed:
            console.print(f"  • {escape(title)}")
    if made.rewrite:
        console.print("To rewrite for the new issue:")
        report(made.rewrite)


@app.command()
def schema(
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the JSON Schema to this file (default: print it).")
    ] = None,
) -> None:
    """The JSON Schema of a draft, for editors whose YAML editor completes keys and flags mistakes as they type."""
    from newsletter.schema import schema_text

    if out is None:
        console.print(schema_text(), markup=False, soft_wrap=True)
        return
    try:
        out.write_text(schema_text(), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    console.print(f"Wrote {out}")


@app.command()
def archive(
    out: Annotated[Path, typer.Option("--out", help="Folder for the web site.")],
    drafts: Annotated[Path, typer.Option("--drafts", help="The drafts folder.")] = Path("drafts"),
    config: Config = Path("newsletter.toml"),
) -> None:
    """Write the web archive: every approved issue, newest first, with its calendar files."""
    from newsletter.archive import build

    settings = settings_or_exit(config)
    known = authorities(settings.recipients)
    issues = [open_draft(path, known).issue for path in sorted(drafts.glob("*.yaml"))]
    if not any(issue.status == "approved" for issue in issues):
        errors.print(f"No approved issue in {drafts}/ to publish: the archive holds approved issues only.")
        raise typer.Exit(1)
    pages = build(issues, output_folder(out), drafts=drafts, settings=settings, members=len(known))
    for page in pages:
        console.print(f"{out / page.folder / 'index.html'} ({len(page.files)} calendar file(s))")
    console.print(f"{out / 'index.html'}: {len(pages)} issue(s)")


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (behind your web server).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8026,
    config: Config = Path("newsletter.toml"),
) -> None:
    """Run the readers' web service: one-click unsubscribe (RFC 8058), the manage pages and the sign-up form."""
    from newsletter.endpoint import prefix, serve
    from newsletter.manage import manage_prefix
    from newsletter.signup import signup_prefix

    if not 1 <= port <= 65535:
        errors.print(f"--port {port} is not a port: use a number from 1 to 65535, such as 8026.")
        raise typer.Exit(2)
    settings = settings_or_exit(config)
    try:
        secret = settings.secret(required=True)
    except ConfigError as exc:
        errors.print(escape(str(exc)))
        raise typer.Exit(2) from None
    console.print(f"Unsubscribe endpoint on http://{host}:{port}{prefix(settings)}/<token>")
    console.print(f"Manage pages on http://{host}:{port}{manage_prefix(settings)}/<token>")
    signing_up = signup_prefix(settings)
    if signing_up:
        console.print(f"Sign-up form on http://{host}:{port}{signing_up}")
    serve(settings, secret, host, port)


suppress_app = typer.Typer(help="The suppression list: people no issue is sent to.", no_args_is_help=True)
app.add_typer(suppress_app, name="suppress")


@suppress_app.command("add")
def suppress_add(
    email: Annotated[str, typer.Argument(help="The address.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for whoever looks later.")],
    config: Config = Path("newsletter.toml"),
) -> None:
    """Stop sending to an address."""
    from newsletter.ledger import Ledger
    from newsletter.recipients import valid_address

    settings = settings_or_exit(config)
    email = valid_address(email)
    with Ledger(settings.ledger) as ledger:
        if ledger.suppress(email, reason, "manual"):
            console.print(f"{email} is suppressed: {escape(reason)}")
        else:
            console.print(f"{email} was already suppressed: {escape(ledger.suppression(email) or '')}")


@suppress_app.command("remove")
def suppress_remove(
    email: Annotated[str, typer.Argument(help="The address.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it may be sent to again.")],
    config: Config = Path("newsletter.toml"),
) -> None:
    """Send to an address again (say why: it is printed for the record)."""
    from newsletter.ledger import Ledger

    settings = settings_or_exit(config)
    with Ledger(settings.ledger) as ledger:
        if ledger.unsuppress(email):
            console.print(f"{email} will get the next issue ({escape(reason)}).")
        else:
            errors.print(f"{email} is not on the suppression list.")
            raise typer.Exit(1)


@suppress_app.command("list")
def suppress_list(config: Config = Path("newsletter.toml")) -> None:
    """Everyone on the suppression list, newest first."""
    from rich.table import Table

    from newsletter.ledger import Ledger

    settings = settings_or_exit(config)
    table = Table(title="Suppression list")
    for heading in ("Address", "Reason", "Source", "Since"):
        table.add_column(heading)
    with Ledger(settings.ledger, create=False) as ledger:
        for email, reason, source, created in ledger.suppressions():
            table.add_row(email, escape(reason), source, dt.datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@app.command()
def forget(
    email: Annotated[str, typer.Argument(help="The address to erase.")],
    config: Config = DEFAULT_CONFIG,
) -> None:
    """Erase a reader at their request: the ledger keeps only a keyed hash (so counts stay right) and never
    mails the address again, even if a list brings it back; says which lists still have it."""
    from newsletter.privacy import forget as erase
    from newsletter.recipients import valid_address

    settings = settings_or_exit(config)
    email = valid_address(email)
    secret = settings.secret()
    with _ledger(settings) as ledger:
        done = erase(settings, ledger, email, secret)
    changed = ", ".join(f"{table} {count}" for table, count in done.changed.items())
    console.print(
        f"Erased {email}: "
        + (f"rows changed to its keyed hash or removed: {changed}" if changed else "the ledger held nothing about it")
        + (f"; {done.spooled} waiting unsubscribe(s) dropped" if done.spooled else "")
        + (f"; {done.closed} delivery(ies) still waiting closed" if done.closed else "")
        + ". It will never be sent an issue again, even if a list brings it back."
    )
    for authority in done.lists:
        path = settings.recipients / f"{authority.slug}.csv"
        console.print(f"Still listed in {path}: ask {escape(authority.name)} to remove it from their export.")


@app.command()
def tidy(config: Config = DEFAULT_CONFIG) -> None:
    """Keep personal data no longer than `retention_months` (newsletter.toml, default 24): addresses and names in
    older delivery and bounce rows become a keyed hash. `newsletter daily` runs it."""
    from newsletter.privacy import tidy_ledger

    settings = settings_or_exit(config)
    console.print(tidy_ledger(settings.ledger, settings.secret(), settings.retention_months).line())


@app.command("report")
def report_command(
    draft: Annotated[Path, typer.Argument(help="The issue to report on.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for one CSV per authority.")],
    config: Config = Path("newsletter.toml"),
) -> None:
    """Per authority: who bounced, unsubscribed or signed up on the web since the last issue, as CSV files."""
    from rich.table import Table

    from newsletter.ledger import Ledger
    from newsletter.report import write_reports

    settings = settings_or_exit(config)
    known = authorities(settings.recipients)
    issue = open_draft(draft, known).issue
    with Ledger(settings.ledger, create=False) as ledger:
        rows = write_reports(ledger, issue.issue, known, output_folder(out))
    table = Table(title=f"{issue.title}, {issue.month_label}: since the last issue")
    for heading in ("Authority", "Sent", "Bounced", "Unsubscribed", "Signed up", "Files"):
        table.add_column(heading, justify="left" if heading in ("Authority", "Files") else "right")
    for row in rows:
        files = "\n".join(str(file) for file in (row.file, row.joined_file) if file) or "-"
        counts = (row.sent, row.bounced, row.unsubscribed, row.joined)
        table.add_row(row.authority.name, *map(str, counts), files)
    console.print(table)


@app.command()
def inbox(
    source: Annotated[
        str | None,
        typer.Option("--source", help="imaps://host, imap://host, maildir:DIR or mbox:FILE (default: [inbox] url)."),
    ] = None,
    folder: Annotated[str | None, typer.Option("--folder", help="The folder to read.")] = None,
    processed: Annotated[str | None, typer.Option("--processed", help="Where understood mail is moved.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be done; change nothing.")] = False,
    config: Config = Path("newsletter.toml"),
) -> None:
    """Read the reply mailbox: bounces and unsubscribe emails update the suppression list and the ledger."""
    from newsletter.inbox import InboxError, open_source, process
    from newsletter.ledger import Ledger

    settings = settings_or_exit(config)
    url = source or settings.inbox.url
    if not url:
        errors.print("Say which mailbox to read: set `url` under \\[inbox] in newsletter.toml, or pass --source.")
        raise typer.Exit(2)
    try:
        secret = settings.secret()
    except ConfigError as exc:
        errors.print(escape(str(exc)))
        raise typer.Exit(2) from None
    done = None
    try:
        box = open_source(
            url,
            username=settings.inbox.username,
            password=settings.imap_password,
            folder=folder or settings.inbox.folder,
            processed=processed or settings.inbox.processed,
            starttls=settings.inbox.starttls,
            timeout=settings.inbox.timeout,
        )
        with Ledger(settings.ledger) as ledger, box:
            done = process(box, ledger, secret, settings.list.id, domain=settings.list.domain, dry_run=dry_run)
    except InboxError as exc:
        done = getattr(exc, "report", None)
        if done is not None:
            _print_inbox(done)
        errors.print(f"[red]error[/]: {escape(str(exc))}")
        raise typer.Exit(1) from None
    _print_inbox(done)


def _print_inbox(done: InboxReport) -> None:
    from rich.table import Table

    table = Table(title="Mailbox")
    for heading in ("Message", "Kind", "Address", "Action"):
        table.add_column(heading)
    for row in done.table():
        table.add_row(*(escape(str(cell)) for cell in row))
    console.print(table)
    console.print(done.summary())


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="The new deployment's folder (made if need be).")],
    title: Annotated[str | None, typer.Option("--title", help='The newsletter\'s name, like "Monthly Update".')] = None,
    network: Annotated[
        str | None, typer.Option("--network", help='The network\'s name, as in "a member of the ...".')
    ] = None,
    domain: Annotated[
        str | None, typer.Option("--domain", help="Your domain: addresses, Message-IDs, List-Id.")
    ] = None,
) -> None:
    """Start a newsletter for your own network: settings, two example members, a first draft. Never overwrites."""
    from newsletter.init import create

    made = create(folder, title=title, network=network, domain=domain)
    for path in made.written:
        console.print(f"Wrote {path}")
    for path in made.kept:
        console.print(f"Kept {path}: it was already there")
    console.print(
        f"Next: cd {folder}, edit newsletter.toml (names, brand, sender), then "
        f"`newsletter check {made.draft.relative_to(folder)}`. README.md lists the steps."
    )
