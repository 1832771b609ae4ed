"""The `newsletter` command: what editors and the mailing job run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from newsletter.load import Draft, DraftError, Problem, load_draft
from newsletter.recipients import Authority, load_authorities
from newsletter.render import GMAIL_CLIP_BYTES, render

app = typer.Typer(help="The West Midlands Regional Update: check, render and send an issue.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)

WARN_BYTES = 90 * 1024

Recipients = Annotated[Path, typer.Option("--recipients", help="Folder with authorities.yaml and the lists.")]


def authorities(folder: Path) -> dict[str, Authority]:
    return {a.slug: a for a in load_authorities(folder / "authorities.yaml")}


def report(problems: list[Problem]) -> None:
    for problem in problems:
        style = "red" if problem.severity == "error" else "yellow"
        errors.print(f"{problem.file}:{problem.line}:{problem.column}: [{style}]{problem.severity}[/]: "
                     f"{escape(problem.message)}", markup=True, soft_wrap=True)


def open_draft(path: Path, known: dict[str, Authority]) -> Draft:
    """Load a draft or stop with its problems listed: the one way every command reads a draft."""
    try:
        return load_draft(path, known)
    except DraftError as exc:
        report(exc.problems)
        errors.print(f"{path}: {len(exc.problems)} problem(s) to fix before this draft can be used.")
        raise typer.Exit(1) from None


@app.command()
def check(
    drafts: Annotated[list[Path], typer.Argument(help="Draft YAML files.")],
    recipients: Recipients = Path("recipients"),
) -> None:
    """Validate drafts: exit 0 when every one is valid, 1 with the problems listed when not."""
    known = authorities(recipients)
    failed = 0
    for path in drafts:
        try:
            open_draft(path, known)
        except typer.Exit:
            failed += 1
            continue
        console.print(f"{path}: [green]ok[/]")
    raise typer.Exit(1 if failed else 0)


@app.command("render")
def render_command(
    draft: Annotated[Path, typer.Argument(help="Draft YAML file.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for email.html and email.txt.")],
    authority: Annotated[Optional[str], typer.Option("--authority", help="Render this authority's variant.")] = None,
    recipients: Recipients = Path("recipients"),
) -> None:
    """Write the HTML and text parts of one variant of the issue."""
    known = authorities(recipients)
    if authority is not None and authority not in known:
        errors.print(f"`{authority}` is not an authority: use one of {', '.join(known)}")
        raise typer.Exit(2)
    issue = open_draft(draft, known).issue
    rendered = render(issue, known[authority] if authority else None)
    out.mkdir(parents=True, exist_ok=True)
    (out / "email.html").write_text(rendered.html, encoding="utf-8")
    (out / "email.txt").write_text(rendered.text, encoding="utf-8")
    size = rendered.size / 1024
    console.print(f"{out / 'email.html'}: {size:.1f} KB of HTML (Gmail clips at {GMAIL_CLIP_BYTES // 1024} KB)")
    console.print(f"{out / 'email.txt'}: {len(rendered.text.encode()) / 1024:.1f} KB of text")
    if rendered.size > WARN_BYTES:
        errors.print(f"[yellow]warning[/]: the HTML is {size:.1f} KB; above {WARN_BYTES // 1024} KB Gmail may "
                     "clip it soon. Move some items to the web archive or shorten them.")
