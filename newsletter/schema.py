"""The JSON Schema of the draft format, generated from `model.py`, for the editor's own editor.

A draft's first line, `# yaml-language-server: $schema=../schema/draft.schema.json`, points a YAML language
server (VS Code's YAML extension by Red Hat, and any editor using yaml-language-server) at this schema:
it completes keys, shows each field's help, and flags a misspelt key or a wrong value while typing.
`newsletter check` stays the judge: the schema cannot know the authority slugs or that a date exists.

The schema is JSON Schema draft-07, the newest the YAML language server reads. It is generated, never
edited by hand: `python -m newsletter.schema` (or `newsletter schema`) writes the committed copy, and a
test fails when the model changes without it.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from newsletter import model
from newsletter.model import SECTION_KINDS, Issue

SCHEMA_FILE = Path("schema") / "draft.schema.json"
"""Where the committed copy lives, from the project folder (drafts/ point at it as ../schema/...)."""

TIME_PATTERN = (
    r"^\s*(?:(?:[01]?\d|2[0-3])[:.][0-5]\d(?:\s*[aApP][mM])?|(?:[01]?\d|2[0-3])\s*[aApP][mM]|"
    r"[nN][oO][oO][nN]|[mM][iI][dD][dD][aA][yY]|12 [nN][oO][oO][nN])\s*$"
)
DATE_PATTERN = r"^\s*\d{4}-\d{1,2}-\d{1,2}\s*$"
URL_PATTERN = r"^\s*[hH][tT][tT][pP][sS]?://[^\s/]+\S*\s*$"
EMAIL_PATTERN = r"^\s*[^@\s]+@[^@\s]+\.[^@\s]+\s*$"

KINDS = {
    "letter": "A letter from someone: heading, body, sign_off and signed.",
    "article": "A news item: heading and body, with an optional picture, contact and link buttons.",
    "events": "Upcoming events: a heading, an optional intro, and the events under `items`.",
    "image": "A picture on its own: src (its https:// address), alt (what it shows), optional caption.",
}

MARKDOWN = (
    "Paragraphs in Markdown: a blank line between paragraphs, `- ` at the start of a line for a bullet, "
    "**bold**, *italic*, [link text](https://...). Write it after `|` on the lines below, indented."
)

HELP: dict[str, dict[str, str]] = {
    "Issue": {
        "title": "The newsletter's name in the masthead.",
        "subject": "The email's subject line; inboxes show about 78 characters.",
        "preheader": "The grey line inboxes show after the subject: one sentence about this issue.",
        "from": "Who the email is from: `name` and `email`.",
        "reply_to": "The address replies go to.",
        "send_on": "The day the mailing job sends the issue (on or after it, once `status` is approved), "
        "year-month-day like 2025-10-17. A weekday.",
        "status": "`draft` while it is being written; `approved` when it may be sent.",
        "sections": "The sections in order, each `- letter:`, `- article:`, `- events:` or `- image:` with its "
        "fields indented under it.",
    },
    "Sender": {"name": "The name readers see as the sender.", "email": "The sending address."},
    "Letter": {
        "heading": "The letter's heading, one line.",
        "body": MARKDOWN,
        "sign_off": "The words above the name, like Kind regards.",
    },
    "Article": {
        "heading": "The article's heading, one line.",
        "body": MARKDOWN,
        "contact": "Someone readers can contact: `name`, `role` and `email`.",
        "links": "Link buttons under the text, each `{text: where it goes, url: https://...}`.",
    },
    "Events": {
        "heading": "The section's heading.",
        "intro": "Markdown before the events. " + MARKDOWN,
        "items": "The events, each starting `- title:`.",
    },
    "Event": {
        "title": "The event's name, one line.",
        "venue": "Where it is held (for every session; a session can give its own `venue`).",
        "online": "The platform, such as Microsoft Teams or Zoom (for every session).",
        "register_by": "The last day to register, year-month-day.",
        "booking": "A button to book or register: `{text: what it does, url: https://...}`.",
        "about": "What the event is. " + MARKDOWN,
        "contact": "Someone readers can ask: `name`, `role` and `email`.",
        "links": "More link buttons, each `{text: where it goes, url: https://...}`.",
    },
    "Session": {
        "date": "The day, year-month-day, like 2025-10-15.",
        "start": "When it starts: 09:30, 14:00, 2pm or 10.30am.",
        "end": "When it ends: 11:00, 5pm or 4.30pm.",
        "venue": "Where this session is held.",
        "online": "The platform for this session, such as Microsoft Teams.",
    },
    "Picture": {
        "src": "The picture's web address, starting with https://.",
        "caption": "A line shown under the picture.",
    },
    "Link": {
        "text": 'Words that say where the link goes (never "click here").',
        "url": "The full web address, starting with https://.",
    },
    "Person": {"name": "Their name.", "email": "Their email address.", "role": "Their role, like SEND Co-ordinator."},
    "Attachment": {"title": "What readers see as the document's name."},
}
HELP["Image"] = HELP["Picture"]


class _Generator(GenerateJsonSchema):
    """Times, dates, addresses and slugs as editors write them (the model parses them from text)."""

    def time_schema(self, schema: core_schema.TimeSchema) -> dict[str, Any]:
        return {"type": "string", "pattern": TIME_PATTERN, "examples": ["09:30", "14:00", "2pm", "10.30am"]}

    def date_schema(self, schema: core_schema.DateSchema) -> dict[str, Any]:
        return {"type": "string", "pattern": DATE_PATTERN, "examples": ["2025-10-15"]}

    def function_before_schema(self, schema: core_schema.BeforeValidatorFunctionSchema) -> dict[str, Any]:
        generated = super().function_before_schema(schema)
        return _by_validator(schema["function"]["function"], generated)

    def function_after_schema(self, schema: core_schema.AfterValidatorFunctionSchema) -> dict[str, Any]:
        generated = super().function_after_schema(schema)
        return _by_validator(schema["function"]["function"], generated)


def _by_validator(function: Any, generated: dict[str, Any]) -> dict[str, Any]:
    patterns = {
        getattr(model, "_url", None): URL_PATTERN,
        getattr(model, "_email", None): EMAIL_PATTERN,
        getattr(model, "_slug", None): model.SLUG.pattern,
    }
    pattern = patterns.get(function)
    if pattern and generated.get("type") == "string":
        return {**generated, "pattern": pattern}
    return generated


def draft_schema() -> dict[str, Any]:
    """The draft format as JSON Schema draft-07, with each field's help."""
    schema = Issue.model_json_schema(by_alias=True, mode="validation", schema_generator=_Generator)
    defs: dict[str, Any] = schema.pop("$defs")
    for name, definition in defs.items():
        definition.get("properties", {}).pop("kind", None)
        if "kind" in definition.get("required", []):
            definition["required"].remove("kind")
        _describe(name, definition)
    _describe("Issue", schema)
    schema["properties"]["sections"]["items"] = {
        "oneOf": [
            {
                "type": "object",
                "title": kind,
                "description": KINDS.get(kind, ""),
                "properties": {kind: {"$ref": f"#/$defs/{section.__name__}", "description": KINDS.get(kind, "")}},
                "required": [kind],
                "additionalProperties": False,
            }
            for kind, section in SECTION_KINDS.items()
        ]
    }
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Regional Update draft",
        "description": "One issue of the newsletter: the YAML file in drafts/ named by its month. Check it with "
        "`newsletter check`.",
        **schema,
        "definitions": defs,
    }
    converted: dict[str, Any] = _draft07(schema)
    return converted


def _describe(name: str, definition: dict[str, Any]) -> None:
    """Help on every field: the model's own words (attribute docstrings, descriptions) first, then HELP."""
    docs = _docstrings(getattr(model, name, None))
    for field, prop in definition.get("properties", {}).items():
        prop.pop("title", None)
        text = prop.get("description") or docs.get(field) or HELP.get(name, {}).get(field)
        if text:
            prop["description"] = " ".join(text.split())


def _docstrings(cls: Any) -> dict[str, str]:
    """The docstrings written under fields (`name: type` then `\"\"\"help\"\"\"`) in a model and its bases."""
    found: dict[str, str] = {}
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        return found
    for base in reversed(cls.__mro__):
        if not (isinstance(base, type) and issubclass(base, BaseModel)) or base.__module__ != model.__name__:
            continue
        try:
            tree = ast.parse(inspect.getsource(base).lstrip())
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                field = base.model_fields.get(node.target.id)
                key = (field.alias if field and field.alias else None) or node.target.id
                found[key] = inspect.cleandoc(after.value.value)
    return found


def _draft07(node: Any) -> Any:
    """pydantic writes 2020-12 (`$defs`, keywords beside `$ref`); draft-07 readers ignore what is beside a `$ref`."""
    if isinstance(node, list):
        return [_draft07(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _draft07(value) for key, value in node.items()}
    if isinstance(node.get("$ref"), str):
        node["$ref"] = node["$ref"].replace("#/$defs/", "#/definitions/")
        if len(node) > 1:
            ref = node.pop("$ref")
            node = {"allOf": [{"$ref": ref}], **node}
    return node


def schema_text() -> str:
    """The schema as committed: stable key order, two-space indent, UTF-8."""
    return json.dumps(draft_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(path: Path = SCHEMA_FILE) -> Path:
    """Write the schema to `path` (its folder is made); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text(), encoding="utf-8")
    return path


if __name__ == "__main__":  # python -m newsletter.schema [PATH]
    print(write_schema(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_FILE))
