"""The README's scheduling examples, taken from the README itself and run: a documented cron line or systemd
unit that stops working fails here. Only the paths are substituted (/srv/newsletter, /etc/newsletter/env)."""

from __future__ import annotations

import datetime as dt
import mailbox
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from newsletter.unsubscribe import read_token
from test_send_cli import everyone
from test_unattended import draft_for

README = ROOT / "README.md"
WORKDIR = "/srv/newsletter"
ENV_FILE = "/etc/newsletter/env"
TEAM = "regional.team@example.org"


def block(language: str) -> str:
    """The one fenced block of `language` in the README's section on the mailing job."""
    section = README.read_text(encoding="utf-8").split("### The monthly mailing job", 1)[1].split("\n## ", 1)[0]
    found = re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert len(found) == 1, f"expected one ```{language} block in the README's mailing job section"
    return found[0]


def cron_command() -> str:
    """The command of the README's cron job line (after the five time fields and the user)."""
    jobs = [
        line
        for line in block("cron").splitlines()
        if line.strip() and not line.startswith("#") and not re.match(r"[A-Z_]+=", line)
    ]
    assert len(jobs) == 1, jobs
    _minute, _hour, day, month, weekday, user, command = jobs[0].split(None, 6)
    assert (day, month, weekday) == ("*", "*", "*"), "the job must run every day"
    assert user == "newsletter"
    return command


def units() -> dict[str, str]:
    """The README's systemd units by file name, from the `# /etc/systemd/system/NAME` line before each."""
    found = re.split(r"^# /etc/systemd/system/(\S+)\n", block("ini"), flags=re.MULTILINE)
    assert found[0].strip() == ""
    return dict(zip(found[1::2], found[2::2], strict=True))


def substitute(text: str, workdir: Path, env_file: Path) -> str:
    return text.replace(WORKDIR, str(workdir)).replace(ENV_FILE, str(env_file))


@pytest.fixture
def deployment(tmp_path: Path) -> tuple[Path, Path, str]:
    """/srv/newsletter and /etc/newsletter/env in miniature: the venv, newsletter.toml, an issue due today."""
    workdir = tmp_path / "srv"
    (workdir / "drafts").mkdir(parents=True)
    (workdir / ".venv").symlink_to(sys.prefix)  # the venv running the tests (.venv, or make floors' own)
    (workdir / "newsletter.toml").write_text(
        f'recipients = "{ROOT / "recipients"}"\nnotify = ["{TEAM}"]\n', encoding="utf-8"
    )  # the outbox, by default
    today = dt.date.today()
    draft_for(workdir / "drafts", f"{today:%Y-%m}", today)
    secret = secrets.token_urlsafe(32)
    env_file = tmp_path / "etc" / "env"
    env_file.parent.mkdir()
    env_file.write_text(f"NEWSLETTER_SECRET={secret}\nNEWSLETTER_SMTP_PASSWORD=unused\n", encoding="utf-8")
    env_file.chmod(0o600)
    return workdir, env_file, secret


def test_the_readme_cron_line_sends_the_issue_due_today_with_nothing_inherited(
    deployment: tuple[Path, Path, str],
) -> None:
    workdir, env_file, secret = deployment
    assert WORKDIR in cron_command() and ENV_FILE in cron_command()  # the paths this test stands in for
    command = substitute(cron_command(), workdir, env_file)
    result = subprocess.run(["env", "-i", "/bin/sh", "-c", command], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    messages = list(mailbox.Maildir(workdir / "outbox", create=False))
    readers = sorted(m["To"].split("<")[-1].rstrip(">") for m in messages if m["To"] != TEAM)
    assert readers == sorted(everyone())
    assert [m["To"] for m in messages].count(TEAM) == 1  # and the team its report
    assert "Daily run: issue" in (workdir / "daily.log").read_text(encoding="utf-8")  # the summary, logged
    # The secret came from the env file (exported by `set -a`), not made up on the spot beside the ledger.
    assert not (workdir / "newsletter.secret").exists()
    token = re.search(r"unsubscribe%20([^>]+)>", messages[0]["List-Unsubscribe"]).group(1)
    address, _ = read_token(token, secret)
    assert address in everyone()


def test_the_readme_systemd_units_verify_and_the_service_runs(
    deployment: tuple[Path, Path, str], tmp_path: Path
) -> None:
    workdir, env_file, _ = deployment
    written = {}
    folder = tmp_path / "units"
    folder.mkdir()
    for name, text in units().items():
        written[name] = folder / name
        written[name].write_text(substitute(text, workdir, env_file), encoding="utf-8")
    assert set(written) == {"newsletter.service", "newsletter.timer"}
    service = units()["newsletter.service"]
    assert f"EnvironmentFile={ENV_FILE}" in service and f"WorkingDirectory={WORKDIR}" in service
    # What systemd would run: ExecStart in WorkingDirectory with only the EnvironmentFile's variables.
    settings = dict(re.findall(r"^(\w+)=(.*)$", written["newsletter.service"].read_text(), re.MULTILINE))
    environment = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line)
    result = subprocess.run(
        shlex.split(settings["ExecStart"]),
        cwd=settings["WorkingDirectory"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list(mailbox.Maildir(workdir / "outbox", create=False))) == len(everyone()) + 1
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package `systemd`): the units were not verified")
    verified = subprocess.run(
        [analyze, "verify", *map(str, written.values())], capture_output=True, text=True, timeout=120
    )
    output = verified.stdout + verified.stderr
    assert verified.returncode == 0, output
    assert str(folder) not in output, output  # a warning about our units (an unknown key, a bad value) fails too
