"""`newsletter new` and `newsletter archive` end to end on the repository's drafts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import lxml.html
from icalendar import Calendar

from conftest import DRAFTS, ROOT
from newsletter.load import load_draft


def newsletter(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def copy_drafts(tmp_path: Path) -> Path:
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    for path in DRAFTS:
        shutil.copy(path, drafts)
    return drafts


def test_new_rolls_the_latest_draft_forward(tmp_path: Path, authorities: dict) -> None:
    drafts = copy_drafts(tmp_path)
    result = newsletter("new", "--drafts", str(drafts))
    assert result.returncode == 0, result.stderr
    made = drafts / "2025-10.yaml"
    assert f"Created {made} from {drafts / '2025-09.yaml'}" in " ".join(result.stdout.split())
    issue = load_draft(made, authorities).issue  # valid as it stands
    # 19 October 2025 is a Sunday: the send date is the Friday before.
    assert (issue.issue, issue.status, str(issue.send_on)) == ("2025-10", "draft", "2025-10-17")
    assert "October 2025" in issue.subject and "September 2025" not in issue.subject
    text = made.read_text(encoding="utf-8")
    # The schema line for the editor's YAML extension, then the editor's comments, carried over.
    assert text.startswith("# yaml-language-server: $schema=../schema/draft.schema.json\n# Source:")
    # Events over by 17 October are left out and listed; later ones stay.
    titles = [e.title for s in issue.sections if s.kind == "events" for e in s.items]
    assert "Care Leavers Policy Workshop convened by the Rees Centre" not in titles
    assert "Regional Safeguarding Conference" in titles and "Participation Conference" in titles
    assert "Care Leavers Policy Workshop convened by the Rees Centre" in result.stdout
    assert "Inequality in the Workplace" in result.stdout
    # The letter and the articles are kept as a starting point.
    assert [s.kind for s in issue.sections][:2] == ["letter", "article"]


def test_new_never_overwrites(tmp_path: Path) -> None:
    drafts = copy_drafts(tmp_path)
    before = (drafts / "2025-07.yaml").read_bytes()
    result = newsletter("new", "2025-07", "--drafts", str(drafts))
    assert result.returncode == 1 and "already exists" in result.stderr
    assert (drafts / "2025-07.yaml").read_bytes() == before


def test_archive_site(tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = newsletter("archive", "--out", str(out))
    assert result.returncode == 0, result.stderr
    index = lxml.html.parse(str(out / "index.html")).getroot()
    links = index.xpath("//main//a/@href")
    assert links == ["2025-09/", "2025-07/", "2023-11/"]  # newest first
    for month in ("2025-09", "2025-07", "2023-11"):
        html = (out / month / "index.html").read_text(encoding="utf-8")
        assert "This is the web version" in html
        assert "[[" not in html and "unsubscribe" not in html.lower() and "example.org/u" not in html
        assert "@example.org" not in html  # no recipient's address, only the team's own
    page = lxml.html.parse(str(out / "2025-09" / "index.html")).getroot()
    calendar_links = [a for a in page.xpath("//a/@href") if a.endswith(".ics")]
    files = sorted(p.name for p in (out / "2025-09").glob("*.ics"))
    assert sorted(calendar_links) == files and len(files) >= 6
    for name in files:
        event = Calendar.from_ical((out / "2025-09" / name).read_bytes()).walk("VEVENT")[0]
        assert event["SUMMARY"]
