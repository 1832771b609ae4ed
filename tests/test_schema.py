"""The JSON Schema editors' YAML extensions read: generated from the model, committed, and right about drafts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conftest import DRAFTS, ROOT
from newsletter.load import DraftError, _yaml, load_draft
from newsletter.new_issue import MODELINE
from newsletter.schema import SCHEMA_FILE, draft_schema, schema_text, write_schema
from test_checks import source

COMMITTED = ROOT / SCHEMA_FILE


def as_json(text: str) -> Any:
    """The draft as a YAML language server sees it: the YAML 1.2 values (dates and times are text)."""
    return json.loads(json.dumps(_yaml().load(text), default=str))


def errors(text: str) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(COMMITTED.read_text(encoding="utf-8")))
    return [error.message for error in validator.iter_errors(as_json(text))]


def test_the_committed_schema_is_the_models() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == schema_text(), (
        f"{SCHEMA_FILE} is out of date with newsletter/model.py: regenerate it with "
        f"`.venv/bin/python -m newsletter.schema` (or `newsletter schema`) from the project folder, and commit it"
    )


def test_the_schema_is_draft_07_with_help_on_every_field() -> None:
    schema = draft_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert "$defs" not in json.dumps(schema)
    for name, definition in [("Issue", schema), *schema["definitions"].items()]:
        for field, prop in definition.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{field} has no help"
    # a section is one key naming its kind, with the fields under it
    branches = schema["properties"]["sections"]["items"]["oneOf"]
    assert [b["required"] for b in branches] == [["letter"], ["article"], ["events"], ["image"]]
    assert all(b["additionalProperties"] is False for b in branches)
    assert "kind" not in json.dumps(schema["definitions"]["Article"]["properties"])


def test_write_schema(tmp_path: Path) -> None:
    path = write_schema(tmp_path / "schema" / "draft.schema.json")
    assert path.read_text(encoding="utf-8") == schema_text()


@pytest.mark.parametrize("path", DRAFTS, ids=[p.name for p in DRAFTS])
def test_every_draft_validates_and_points_at_the_schema(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert errors(text) == []
    first = text.splitlines()[0]
    assert first == MODELINE
    assert (path.parent / first.split("$schema=", 1)[1]).resolve() == COMMITTED


ARTICLE = """\
- article:
    heading: News
    body: |
      Text.
    links:
      - {text: The programme, url: "https://wm.gov.uk/programme"}
- events:
    items:
      - title: PWLE Seminar
        cost: free
        sessions:
          - {date: 2025-10-15, start: "09:30", end: 2pm}
- image:
    src: https://wm.gov.uk/team.jpg
    alt: The Walsall team receiving their award
"""


def test_a_small_draft_validates() -> None:
    assert errors(source(ARTICLE)) == []


@pytest.mark.parametrize(
    ("mistake", "before", "after"),
    [
        ("misspelt key", "heading: News", "hedaing: News"),
        ("misspelt top-level key", "preheader:", "preheadr:"),
        ("wrong type", "cost: free", "cost: [free, paid]"),
        ("wrong type in a list", '- {text: The programme, url: "https://wm.gov.uk/programme"}', "- The programme"),
        ("unknown section kind", "- article:", "- artcle:"),
        (
            "fields beside the kind",
            "- image:\n    src: https://wm.gov.uk/team.jpg\n    alt:",
            "- image:\n  src: https://wm.gov.uk/team.jpg\n  alt:",
        ),
        ("impossible time", 'start: "09:30"', 'start: "25:00"'),
        ("date in words", "date: 2025-10-15", "date: 15th October"),
        ("address without https", '"https://wm.gov.uk/programme"', '"wm.gov.uk/programme"'),
        ("status", "preheader:", "status: ready\npreheader:"),
    ],
)
def test_mistakes_are_rejected_by_the_schema_and_the_loader(
    tmp_path: Path, mistake: str, before: str, after: str
) -> None:
    text = source(ARTICLE)
    assert before in text
    bad = text.replace(before, after, 1)
    assert errors(bad), mistake
    (tmp_path / "draft.yaml").write_text(bad, encoding="utf-8")
    with pytest.raises(DraftError):
        load_draft(tmp_path / "draft.yaml")


@pytest.mark.parametrize(
    "time",
    [
        "09:30",
        "9.30",
        "14:00",
        "2pm",
        "2 PM",
        "10.30am",
        "noon",
        "Midday",
        "25:00",
        "9",
        "12:60",
        "half past nine",
        "0930",
    ],
)
def test_the_schema_accepts_the_times_the_model_accepts(tmp_path: Path, time: str) -> None:
    text = source(ARTICLE).replace('start: "09:30", end: 2pm', f'start: "{time}"')
    (tmp_path / "draft.yaml").write_text(text, encoding="utf-8")
    try:
        load_draft(tmp_path / "draft.yaml")
        model_accepts = True
    except DraftError:
        model_accepts = False
    assert (errors(text) == []) == model_accepts, time


def test_what_new_writes_validates(tmp_path: Path) -> None:
    import shutil

    from newsletter.new_issue import create

    drafts = tmp_path / "drafts"
    drafts.mkdir()
    for path in DRAFTS:
        shutil.copy(path, drafts)
    made = create(drafts)
    assert errors(made.path.read_text(encoding="utf-8")) == []
