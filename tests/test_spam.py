"""The sample issue's real message scored by SpamAssassin (local rules only)."""

from __future__ import annotations

import subprocess
import sys

from conftest import DRAFTS, ROOT
from newsletter.config import Settings
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


def test_check_spam_command_prints_the_rules() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "check", "--spam", str(DRAFTS[-1])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
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
