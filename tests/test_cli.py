"""The commands as an editor runs them, in a subprocess from the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import DRAFTS, ROOT


def newsletter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_check_all_drafts() -> None:
    result = newsletter("check", *map(str, DRAFTS))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok") == 3


def test_check_bad_draft_exits_1_with_located_problems(tmp_path: Path) -> None:
    bad = tmp_path / "2025-10.yaml"
    bad.write_text(
        DRAFTS[-1]
        .read_text(encoding="utf-8")
        .replace("  - article:\n", "  - artcle:\n", 1)
        .replace("status: approved", "status: ok"),
        encoding="utf-8",
    )
    result = newsletter("check", str(bad), str(DRAFTS[0]))
    assert result.returncode == 1
    assert f"{bad}:14:9: error: `status` cannot be `ok`" in result.stderr
    assert "did you mean `article`?" in result.stderr
    assert "Traceback" not in result.stderr
    assert f"{DRAFTS[0]}: ok" in result.stdout


def test_render_writes_both_parts_and_prints_size(tmp_path: Path) -> None:
    result = newsletter("render", str(DRAFTS[-1]), "--out", str(tmp_path), "--authority", "coventry")
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "email.html").read_text(encoding="utf-8")
    text = (tmp_path / "email.txt").read_text(encoding="utf-8")
    assert "Coventry City Council" in html and "Coventry City Council" in " ".join(text.split())
    kb = len(html.encode()) / 1024
    assert f"{kb:.1f} KB of HTML" in result.stdout


def test_render_unknown_authority(tmp_path: Path) -> None:
    result = newsletter("render", str(DRAFTS[-1]), "--out", str(tmp_path), "--authority", "narnia")
    assert result.returncode == 2 and "`narnia` is not an authority" in result.stderr


def test_version_and_plain_help() -> None:
    from importlib.metadata import version

    assert newsletter("--version").stdout.strip() == f"newsletter {version('newsletter')}"
    main_help = newsletter("--help").stdout
    assert "<bool>" not in main_help and "--version" in main_help
    assert "(default: [inbox] url)" in " ".join(newsletter("inbox", "--help").stdout.split())  # not eaten as markup
    send_help = newsletter("send", "--help").stdout
    assert "<bool>" not in send_help and "<list[" not in send_help


def test_a_misspelt_authority_gets_a_suggestion(tmp_path: Path) -> None:
    result = newsletter("proof", "drafts/2025-09.yaml", "--to", "me@example.org", "--authority", "walsal")
    assert result.returncode == 2 and "did you mean `walsall`?" in result.stderr


def test_the_cli_loads_no_renderer_smtp_or_web_stack_until_a_command_needs_it() -> None:
    """`--help` and `check` must answer at once: the renderer, SMTP, the web stack, and even the model, the
    settings and asyncio are imported by the commands that use them (a fact about sys.modules, not a timing)."""
    code = (
        "import sys, newsletter.cli; print(' '.join(m for m in ('premailer', 'mjml', 'icalendar', 'starlette', "
        "'aiosmtplib', 'dkim', 'uvicorn', 'asyncio', 'pydantic', 'newsletter.config', 'ruamel.yaml', 'jinja2') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == ""


def test_schema_command_prints_the_committed_schema(tmp_path: Path) -> None:
    printed = newsletter("schema")
    assert printed.returncode == 0
    committed = (ROOT / "schema" / "draft.schema.json").read_text(encoding="utf-8")
    assert printed.stdout.strip() == committed.strip()
    written = newsletter("schema", "--out", str(tmp_path / "s.json"))
    assert written.returncode == 0 and (tmp_path / "s.json").read_text(encoding="utf-8") == committed
