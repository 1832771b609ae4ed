"""`newsletter init DIR`: a working deployment for a new network, so adopting the tool needs no code edits.

It writes `newsletter.toml` (every setting, with what it does), two example members with sample lists at
reserved `example.org` addresses, a first draft for the current month (pointing at the draft schema, which
is written beside it), and a README of next steps. It never overwrites a file: what is already there is
kept and named, so running it again only fills in what is missing. The starter files live in
`newsletter/starter/`, inside the package, so an installed copy has them too.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import json
import re
import tomllib
from importlib import resources
from pathlib import Path

import jinja2
from pydantic import ValidationError

from newsletter.config import Settings
from newsletter.errors import ConfigError, OutputError
from newsletter.schema import SCHEMA_FILE, schema_text

DEFAULT_TITLE = "Monthly Update"
DEFAULT_NETWORK = "Example Network"
DEFAULT_DOMAIN = "example.org"
"""Reserved (RFC 2606): nothing is ever delivered there, so a deployment made without --domain is harmless."""
MEMBERS = ("example-council", "example-trust")
_DOMAIN = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{1,62}")


@dataclasses.dataclass(frozen=True)
class Made:
    """What `create` did: the files it wrote and those it found already there and kept."""

    folder: Path
    draft: Path
    written: list[Path]
    kept: list[Path]


def create(
    folder: Path,
    *,
    title: str | None = None,
    network: str | None = None,
    domain: str | None = None,
    today: dt.date | None = None,
) -> Made:
    """Make the deployment in `folder` (made if need be); ConfigError for a name or domain that cannot work."""
    today = today or dt.date.today()
    domain = (domain or DEFAULT_DOMAIN).strip().lower()
    values = starter_values(title or DEFAULT_TITLE, network or DEFAULT_NETWORK, domain, today)
    files = starter_files(values)
    _check_settings(files[Path("newsletter.toml")])
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file: name a folder for the new deployment (it is made if need be)")
    written: list[Path] = []
    kept: list[Path] = []
    for relative, text in files.items():
        target = folder / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("x", encoding="utf-8", newline="\n") as file:  # "x": never replaces a file
                file.write(text)
        except FileExistsError:
            kept.append(target)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
        else:
            written.append(target)
    return Made(folder=folder, draft=folder / str(values["path"]), written=written, kept=kept)


def starter_values(title: str, network: str, domain: str, today: dt.date) -> dict[str, object]:
    """Everything the starter files say, from the three names given to `init` and today's date."""
    if not _DOMAIN.fullmatch(domain):
        raise ConfigError(
            f"--domain {domain}: that is not a domain name; give your organisation's, like example.org "
            "(an internationalised one as xn-- labels)"
        )
    for option, value in (("--title", title), ("--network", network)):
        if not value.strip() or len(value.splitlines()) > 1:
            raise ConfigError(f"{option} must be one line of text")
    title, network = " ".join(title.split()), " ".join(network.split())
    month = f"{today:%Y-%m}"
    send_on = _send_day(today)
    return {
        "title": title,
        "network": network,
        "masthead": network.removesuffix(" network") or network,
        "domain": domain,
        "list_id": f"{_slug(title)}.{domain}",
        "sender_name": f"{network} team" if not network.lower().endswith("team") else network,
        "sender_email": f"news@{domain}",
        "month": month,
        "send_on": send_on.isoformat(),
        "meeting": _second_wednesday_after(send_on).isoformat(),
        "subject": f"{title}, {calendar.month_name[today.month]} {today.year}: welcome",
        "path": f"drafts/{month}.yaml",
    }


def starter_files(values: dict[str, object]) -> dict[Path, str]:
    """Each file of the deployment (relative path -> text), rendered from `newsletter/starter/`."""
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_starter_text),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    # JSON strings are valid TOML basic strings and YAML double-quoted scalars: quotes and backslashes escaped.
    env.filters["toml"] = env.filters["yaml"] = lambda text: json.dumps(str(text), ensure_ascii=False)
    files = {
        Path("newsletter.toml"): env.get_template("newsletter.toml.j2").render(values),
        Path("recipients/authorities.yaml"): env.get_template("authorities.yaml.j2").render(values),
        **{Path(f"recipients/{slug}.csv"): _starter_text(f"{slug}.csv") for slug in MEMBERS},
        Path(str(values["path"])): env.get_template("draft.yaml.j2").render(values),
        SCHEMA_FILE: schema_text(),
        Path("README.md"): env.get_template("README.md.j2").render(values),
    }
    return files


def _starter_text(name: str) -> str:
    return resources.files("newsletter").joinpath("starter", name).read_text(encoding="utf-8")


def _check_settings(text: str) -> None:
    """The settings file as written must load: a name that breaks it is refused before anything is written."""
    try:
        Settings.model_validate(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigError(f"these names would make newsletter.toml invalid: {exc}") from None


def _slug(text: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())) or "newsletter"


def _send_day(today: dt.date) -> dt.date:
    """The last weekday of this month (or today, when that has passed): the first issue's send date."""
    last = dt.date(today.year, today.month, calendar.monthrange(today.year, today.month)[1])
    while last.weekday() >= 5:
        last -= dt.timedelta(days=1)
    return max(last, today)


def _second_wednesday_after(day: dt.date) -> dt.date:
    """The second Wednesday of the month after `day`: the sample meeting, safely after the send date."""
    first = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return first + dt.timedelta(days=(2 - first.weekday()) % 7 + 7)
