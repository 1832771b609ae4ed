"""Broken surroundings a user can cause: each gives one clear line and a non-zero exit, never a traceback.

Every traceback a user can cause is a bug: when one is found, add its case here.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import ROOT
from test_send_cli import SEPTEMBER, config, run

Case = Callable[[Path], list[str]]


def lists(tmp_path: Path, authorities_yaml: str | None) -> Path:
    """A recipients folder with the sample lists and the given authorities.yaml (None: no such file)."""
    folder = tmp_path / "recipients"
    shutil.copytree(ROOT / "recipients", folder)
    if authorities_yaml is None:
        (folder / "authorities.yaml").unlink()
    else:
        (folder / "authorities.yaml").write_text(authorities_yaml, encoding="utf-8")
    settings = config(tmp_path, f"outbox:{tmp_path / 'outbox'}")
    settings.write_text(settings.read_text().replace(str(ROOT / "recipients"), str(folder)), encoding="utf-8")
    return settings


def with_lists(authorities_yaml: str | None, *command: str) -> Case:
    return lambda tmp_path: [*command, "--config", str(lists(tmp_path, authorities_yaml))]


def settings_file(content: bytes) -> Case:
    def case(tmp_path: Path) -> list[str]:
        path = tmp_path / "newsletter.toml"
        path.write_bytes(content)
        return ["check", SEPTEMBER, "--config", str(path)]

    return case


def outbox_config(tmp_path: Path) -> str:
    return str(config(tmp_path, f"outbox:{tmp_path / 'outbox'}"))


def existing_file(tmp_path: Path) -> str:
    path = tmp_path / "taken"
    path.write_text("not a folder")
    return str(path)


def no_approved_issue(tmp_path: Path) -> list[str]:
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    (drafts / "2025-09.yaml").write_text(
        Path(SEPTEMBER).read_text(encoding="utf-8").replace("status: approved", "status: draft"), encoding="utf-8"
    )
    return ["archive", "--out", str(tmp_path / "site"), "--drafts", str(drafts), "--config", outbox_config(tmp_path)]


def sent_ledger(tmp_path: Path) -> str:
    settings = outbox_config(tmp_path)
    assert run("send", SEPTEMBER, "--config", settings).returncode == 0
    return settings


UNWRITABLE = "/proc/version/out"  # under a file of the kernel's: no one can make a folder there


def cfg(tmp_path: Path) -> list[str]:
    return ["--config", outbox_config(tmp_path)]


CASES: dict[str, tuple[Case, str]] = {
    "authorities.yaml missing: recipients check": (with_lists(None, "recipients", "check"), "no such file"),
    "authorities.yaml missing: check": (with_lists(None, "check", SEPTEMBER), "authorities.yaml"),
    "authorities.yaml missing: send": (with_lists(None, "send", SEPTEMBER), "authorities.yaml"),
    "authorities.yaml not YAML: recipients check": (
        with_lists("- slug: [walsall\n", "recipients", "check"),
        "authorities.yaml",
    ),
    "authorities.yaml not YAML: send": (with_lists("a: b: c\n", "send", SEPTEMBER), "authorities.yaml"),
    "authorities.yaml bad slug: check": (
        with_lists("- {slug: Not A Slug!, name: X, kind: council}\n", "check", SEPTEMBER),
        "slug",
    ),
    "authorities.yaml bad slug: recipients check": (
        with_lists("- {slug: 'walsall/../x', name: W, kind: council}\n", "recipients", "check"),
        "slug",
    ),
    "--config names no file": (
        lambda tmp_path: ["check", SEPTEMBER, "--config", str(tmp_path / "newsleter.toml")],
        "no such file",
    ),
    "--config is a folder": (lambda tmp_path: ["check", SEPTEMBER, "--config", str(tmp_path)], "is a folder"),
    "config not UTF-8": (settings_file('[list]\nname = "Caf\xe9"\n'.encode("latin-1")), "UTF-8"),
    "config not TOML": (settings_file(b"[transport\nurl = 1\n"), "newsletter.toml"),
    "render --out is a file": (
        lambda tmp_path: ["render", SEPTEMBER, "--out", existing_file(tmp_path), *cfg(tmp_path)],
        "is a file",
    ),
    "render --out unwritable": (
        lambda tmp_path: ["render", SEPTEMBER, "--out", UNWRITABLE, *cfg(tmp_path)],
        "cannot write to --out",
    ),
    "report --out is a file": (
        lambda tmp_path: ["report", SEPTEMBER, "--config", sent_ledger(tmp_path), "--out", existing_file(tmp_path)],
        "is a file",
    ),
    "report --out unwritable": (
        lambda tmp_path: ["report", SEPTEMBER, "--config", sent_ledger(tmp_path), "--out", UNWRITABLE],
        "cannot write to --out",
    ),
    "archive --out is a file": (
        lambda tmp_path: [
            "archive",
            "--out",
            existing_file(tmp_path),
            "--drafts",
            str(ROOT / "drafts"),
            *cfg(tmp_path),
        ],
        "is a file",
    ),
    "archive --out unwritable": (
        lambda tmp_path: ["archive", "--out", UNWRITABLE, "--drafts", str(ROOT / "drafts"), *cfg(tmp_path)],
        "cannot write to --out",
    ),
    "archive with no approved issue": (no_approved_issue, "No approved issue"),
    "preview --port 99999": (
        lambda tmp_path: ["preview", SEPTEMBER, "--port", "99999", "--no-browser", *cfg(tmp_path)],
        "is not a port",
    ),
    "serve --port 99999": (lambda tmp_path: ["serve", "--port", "99999", *cfg(tmp_path)], "is not a port"),
    "proof --transport bad port": (
        lambda tmp_path: [
            "proof",
            SEPTEMBER,
            "--to",
            "me@example.org",
            "--config",
            str(config(tmp_path, "smtp://127.0.0.1:abc")),
        ],
        "valid port",
    ),
    "send --transport port out of range": (
        lambda tmp_path: ["send", SEPTEMBER, "--transport", "smtp://127.0.0.1:99999", *cfg(tmp_path)],
        "valid port",
    ),
    "send --connections -1": (
        lambda tmp_path: ["send", SEPTEMBER, "--connections", "-1", *cfg(tmp_path)],
        "--connections",
    ),
    "send --rate -5": (lambda tmp_path: ["send", SEPTEMBER, "--rate", "-5", *cfg(tmp_path)], "--rate"),
    "suppress add not an address": (
        lambda tmp_path: ["suppress", "add", "not an email", "--reason", "x", *cfg(tmp_path)],
        "not a valid email address",
    ),
    "status with no ledger yet": (lambda tmp_path: ["status", SEPTEMBER, *cfg(tmp_path)], "no send history"),
    "send a draft that does not exist": (
        lambda tmp_path: ["send", str(tmp_path / "2025-13.yaml"), *cfg(tmp_path)],
        "2025-13.yaml",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_one_clear_line_and_a_non_zero_exit(tmp_path: Path, case: str) -> None:
    make, says = CASES[case]
    args = make(tmp_path)
    result = run(*args, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode not in (0, 130), output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, output  # a line or two saying what is wrong and what to do, not a dump
    assert says in result.stderr, output


def read_only_ledger(tmp_path: Path) -> tuple[Path, Path]:
    """A ledger on a read-only filesystem (a small tmpfs remounted read-only)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    settings = config(tmp_path, f"outbox:{tmp_path / 'outbox'}")
    settings.write_text(settings.read_text().replace(str(tmp_path / "ledger.db"), str(disk / "ledger.db")))
    assert run("send", SEPTEMBER, "--config", str(settings)).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    return disk, settings


@pytest.mark.parametrize(
    "command", [["send", SEPTEMBER, "--retry-failed"], ["suppress", "add", "a@example.org", "--reason", "asked"]]
)
def test_a_ledger_on_a_read_only_filesystem(tmp_path: Path, command: list[str]) -> None:
    disk, settings = read_only_ledger(tmp_path)
    try:
        result = run(*command, "--config", str(settings))
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and str(disk / "ledger.db") in result.stderr
