"""Who gets the issue: the member authorities and their recipient lists."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter
from ruamel.yaml import YAML

from newsletter.model import Line, Slug


class Authority(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: Slug
    name: Line
    kind: Literal["council", "trust"]


def load_authorities(path: Path) -> list[Authority]:
    """The member organisations, in the order the file lists them."""
    data = YAML(typ="safe").load(Path(path).read_text(encoding="utf-8"))
    return TypeAdapter(list[Authority]).validate_python(data)
