"""1. Render: each draft's sixteen variants; the MJML step against the reference renderer; HTML sizes; `check`."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import AUTHORITIES, BENCH, ROOT, SAMPLE, Figure, Missing, Plan, newsletter_command, ratio_runs, tool

SECTION = "1. Render"
NODE_DIR = BENCH / "node"


def drafts(plan: Plan) -> list[Figure]:
    """Per draft: load + validate + render all sixteen variants; the largest variant's HTML against Gmail's clip."""
    from newsletter.load import load_draft
    from newsletter.recipients import load_authorities
    from newsletter.render import GMAIL_CLIP_BYTES, render

    authorities = load_authorities(AUTHORITIES)
    known = {a.slug: a for a in authorities}
    figures: list[Figure] = []
    for draft in plan.drafts:
        times = []
        for repeat in range(plan.render_repeats + 1):  # the first run warms the template caches and is not counted
            start = time.perf_counter()
            issue = load_draft(draft, known).issue
            variants = {a.slug: render(issue, a) for a in authorities}
            if repeat:
                times.append(time.perf_counter() - start)
        figures.append(
            Figure(SECTION, f"{draft.stem}: load, validate, render all 16 variants (HTML + text)", "s", times)
        )
        largest = max(authorities, key=lambda a: variants[a.slug].size)
        size = variants[largest.slug].size
        figures.append(
            Figure(
                SECTION,
                f"{draft.stem}: HTML of the largest variant ({largest.slug}) / Gmail's 102 KB clip",
                "x",
                [size / GMAIL_CLIP_BYTES],
                target="< 1",
                met=size < GMAIL_CLIP_BYTES,
                note=f"{size / 1024:.1f} KB ({size:,} bytes), the same every run; `check` warns above 90 KB (0.88)",
            )
        )
    return figures


def mjml_step(plan: Plan) -> list[Figure]:
    """The MJML-to-HTML step alone, mjml-python in this process against mjml on Node, on each draft's largest
    variant; the ratio is Node's time over Python's, batch by batch."""
    import mjml

    from newsletter.load import load_draft
    from newsletter.recipients import load_authorities
    from newsletter.render import render

    node = ensure_node_modules(install=plan.install_node)
    authorities = load_authorities(AUTHORITIES)
    known = {a.slug: a for a in authorities}
    sources: dict[str, str] = {}
    for draft in plan.drafts:
        issue = load_draft(draft, known).issue
        largest = max(authorities, key=lambda a: render(issue, a).size)
        sources[draft.stem] = mjml_source(issue, largest)
    reference, versions = _node_mjml(node, sources, plan)
    figures: list[Figure] = []
    for name, source in sources.items():
        python = _python_mjml(mjml, source, plan)
        figures.append(Figure(SECTION, f"{name}: MJML→HTML, mjml-python, per render", "ms", python))
        figures.append(
            Figure(
                SECTION,
                f"{name}: MJML→HTML, mjml {versions['mjml']} on Node {versions['node']}, per render",
                "ms",
                reference[name],
            )
        )
        figures.append(
            Figure(
                SECTION,
                f"{name}: MJML→HTML, Node time / mjml-python time",
                "x",
                ratio_runs(reference[name], python),
                note="above 1: mjml-python is faster",
            )
        )
    return figures


STARTUP_TARGETS = {"--help": 6.0, "check": 12.0}


LIBRARIES = "typer, rich.console, pydantic.main, email_validator, ruamel.yaml, markdown_it, jinja2, mjml, premailer"
"""What `check` cannot do without: the CLI, the model and its validation (pydantic imports its models lazily:
pydantic.main is BaseModel), YAML with line numbers, the renderer (its size warning needs the inlined HTML)."""


def startup(plan: Plan) -> list[Figure]:
    """`newsletter --help` and `newsletter check drafts/2025-09.yaml` as an editor runs them (the whole process,
    interpreter start included), against `python -c pass` in the same venv: they alternate, round by
    round, and each ratio is taken within its round. Beside them, the imports `check` cannot do without, and
    nothing else: the floor under `check`'s figure.

    As on an editor's machine, Python writes its bytecode (PYTHONDONTWRITEBYTECODE is dropped) and each command
    runs once before the rounds, so no round compiles a module or a template."""
    python = [sys.executable, "-c", "pass"]
    commands = {
        "--help": [newsletter_command(), "--help"],
        "check": [newsletter_command(), "check", str(SAMPLE.relative_to(ROOT))],
        "libraries": [sys.executable, "-c", f"import {LIBRARIES}"],
    }
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    times: dict[str, list[float]] = {"pass": [], **{name: [] for name in commands}}
    for warm_up in [True] + [False] * plan.startup_repeats:
        for name, command in [("pass", python), *commands.items()]:
            start = time.perf_counter()
            result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
            if not warm_up:
                times[name].append(time.perf_counter() - start)
            if result.returncode != 0:
                raise RuntimeError(f"`{' '.join(command)}` failed:\n{result.stdout}\n{result.stderr}")
    figures = [Figure(SECTION, "`python -c pass`, same venv", "s", times["pass"])]
    for name, command in commands.items():
        if name == "libraries":
            shown, what = f"`import` of what check needs ({LIBRARIES})", "the floor under `check`"
        else:
            shown, what = "`" + " ".join(["newsletter", *command[1:]]) + "`", "whole process (cold start)"
        ratios = ratio_runs(times[name], times["pass"])
        target = STARTUP_TARGETS.get(name)
        figures += [
            Figure(SECTION, f"{shown}, {what}", "s", times[name]),
            Figure(
                SECTION,
                f"{shown} / `python -c pass`",
                "x",
                ratios,
                target=f"≤ {target:g}" if target else "",
                met=statistics.median(ratios) <= target if target else None,
                note="median of the rounds' ratios",
            ),
        ]
    return figures


BENCHMARKS = (drafts, mjml_step, startup)


def mjml_source(issue: object, authority: object) -> str:
    """The MJML that render() hands to the MJML step for this variant, caught on its way in, so it is exactly
    what the product renders (the context is not rebuilt here, so it cannot drift from render())."""
    from newsletter import render as module

    caught: list[str] = []
    original = module.to_html
    module.to_html = lambda source: caught.append(source) or original(source)
    try:
        module.render(issue, authority)
    finally:
        module.to_html = original
    if len(caught) != 1:
        raise RuntimeError("render() no longer goes through to_html(): update bench/render.py")
    return caught[0]


def _python_mjml(mjml: object, source: str, plan: Plan) -> list[float]:
    for _ in range(plan.mjml_warmup):
        mjml.mjml2html(source, fonts={}, disable_comments=True)
    batches = []
    for _ in range(plan.mjml_batches):
        start = time.perf_counter()
        for _ in range(plan.mjml_per_batch):
            mjml.mjml2html(source, fonts={}, disable_comments=True)
        batches.append((time.perf_counter() - start) / plan.mjml_per_batch * 1000)
    return batches


def ensure_node_modules(*, install: bool = True) -> str:
    """bench/node/node_modules (the `mjml` package pinned in bench/node/package.json), installed when missing
    (`npm install`, from the npm registry) unless `install` is false: then a missing package skips the benchmark."""
    node = tool("node", "nodejs")
    if not (NODE_DIR / "node_modules" / "mjml" / "package.json").exists():
        if not install:
            raise Missing(
                "the `mjml` npm package is not in bench/node/node_modules (`python -m bench` installs it;"
                " the tests never do)"
            )
        npm = shutil.which("npm")
        if not npm:
            raise Missing("`npm` is not installed: apt-get install npm")
        result = subprocess.run(
            [npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise RuntimeError(f"npm install --prefix bench/node failed:\n{result.stderr}")
    return node


def _node_mjml(node: str, sources: dict[str, str], plan: Plan) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Per-render milliseconds of each batch, from one Node process that warms up first (render.js)."""
    with tempfile.TemporaryDirectory() as tmp:
        request = Path(tmp) / "input.json"
        request.write_text(
            json.dumps(
                {
                    "warmup": plan.mjml_warmup,
                    "batches": plan.mjml_batches,
                    "per_batch": plan.mjml_per_batch,
                    "sources": sources,
                }
            ),
            encoding="utf-8",
        )
        result = subprocess.run(
            [node, str(NODE_DIR / "render.js"), str(request)], capture_output=True, text=True, timeout=600
        )
    if result.returncode != 0:
        raise RuntimeError(f"node bench/node/render.js failed:\n{result.stderr}")
    answer = json.loads(result.stdout)
    return {name: r["batch_ms"] for name, r in answer["results"].items()}, answer["versions"]
