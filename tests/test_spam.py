"""The sample issue's real message scored by SpamAssassin (local rules only)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DRAFTS, ROOT
from newsletter.config import Settings
from newsletter.errors import SpamAssassinUnavailable
from newsletter.load import load_draft
from newsletter.message import Composer
from newsletter.recipients import Recipient
from newsletter.render import render
from newsletter.spam import BAD_RULES, parse, score


def test_sample_issue_scores_low_with_no_structural_rules() -> None:
    issue = load_draft(DRAFTS[-1]).issue
    settings = Settings.model_validate({"list": {"unsubscribe_url": "https://updates.example.org/unsubscribe"}})
    message = Composer(issue, render(issue), settings, "secret").compose(
        Recipient("jo.bloggs@walsall.example.org", "Jo Bloggs", "walsall")
    )
    result = score(message.data)
    print(f"SpamAssassin: {result.points} points; rules: {[r[0] for r in result.rules]}")
    assert result.points < 1.0
    assert result.bad_rules == []
    assert "HTML_MESSAGE" in [name for name, _, _ in result.rules]  # it really read the HTML part


def check_spam(path: str | None = None) -> subprocess.CompletedProcess[str]:
    """`newsletter check --spam` on the sample issue, with `path` as PATH when given."""
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "check", "--spam", str(DRAFTS[-1])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": path or os.environ["PATH"]},
    )


def test_check_spam_command_prints_the_rules() -> None:
    result = check_spam()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SpamAssassin:" in result.stdout and "HTML_MESSAGE" in result.stdout


def test_a_malformed_message_is_caught() -> None:
    """No Date, no Message-ID, text and HTML that disagree: the rules the check exists to catch."""
    bad = (
        b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hello\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
        b"Cheap watches here today only\r\n--b\r\nContent-Type: text/html\r\n\r\n"
        b"<html><body><p>Quarterly report attached for the finance committee meeting on Tuesday</p>"
        b"</body></html>\r\n--b--\r\n"
    )
    result = score(bad)
    assert any(BAD_RULES.match(name) for name, _, _ in result.rules), result.rules


def test_parse_reads_wrapped_descriptions() -> None:
    report = """Content analysis details:   (1.2 points, 5.0 required)

 pts rule name              description
---- ---------------------- --------------------------------------------------
 0.7 HTML_FONT_LOW_CONTRAST BODY: HTML font color similar or identical to
                            background
 0.5 MISSING_DATE           Missing Date: header
"""
    result = parse(report)
    assert result.points == 1.2 and result.required == 5.0
    assert result.rules[0] == (
        "HTML_FONT_LOW_CONTRAST",
        0.7,
        "BODY: HTML font color similar or identical to background",
    )
    assert result.bad_rules == ["MISSING_DATE"]


def _spamassassin(folder: Path, script: str) -> str:
    """A PATH whose `spamassassin` is `script` (a real program that misbehaves), then the usual PATH."""
    program = folder / "spamassassin"
    program.write_text(f"#!/bin/sh\n{script}\n")
    program.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def test_a_broken_spamassassin_is_one_warning_not_a_traceback(tmp_path: Path) -> None:
    """SpamAssassin installed without its rules answers with no report: the editor is told why, once."""
    path = _spamassassin(tmp_path, 'echo "config: no rules were found!  Do you need to run sa-update?" >&2; exit 2')
    result = check_spam(path)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "SpamAssassin gave no report (exit code 2: config: no rules were found!" in result.stderr
    assert "the spam check was skipped" in result.stderr


def test_a_spamassassin_that_does_not_answer_is_given_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _spamassassin(tmp_path, "exec sleep 60"))
    with pytest.raises(SpamAssassinUnavailable, match="did not answer in 1 s"):
        score(b"Subject: hello\r\n\r\nhello\r\n", timeout=1)
