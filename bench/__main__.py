"""`python -m bench`: every benchmark, a table on stdout, and bench/RESULTS.md. See bench/README.md.

python -m bench                 # the full run (about 8–9 minutes on 2 cores)
python -m bench --tiny          # every benchmark on a tiny size, a minute: does it all still work?
python -m bench --only send     # some sections: render, send (with DKIM), pacing, scale (with resume)
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from bench import pacing, render, scale, send
from bench.common import BENCH, ROOT, SBIN, Figure, Missing, Plan

SECTIONS = {"render": render, "send": send, "pacing": pacing, "scale": scale}
PACKAGES = (
    "newsletter",
    "mjml-python",
    "premailer",
    "jinja2",
    "pydantic",
    "ruamel.yaml",
    "email-validator",
    "aiosmtplib",
    "dkimpy",
    "itsdangerous",
    "aiosmtpd",
    "cryptography",
    "pynacl",
)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, one repeat (does not write RESULTS.md)")
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run only these sections")
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the results (default bench/RESULTS.md; with --tiny or --only, nowhere unless given)",
    )
    args = parser.parse_args()
    plan = Plan.tiny() if args.tiny else Plan()
    out = args.out or (None if args.tiny or args.only else BENCH / "RESULTS.md")

    started = time.perf_counter()
    figures: list[Figure] = []
    skipped: list[str] = []
    for name in args.only or SECTIONS:
        for benchmark in SECTIONS[name].BENCHMARKS:
            label = f"{name}.{benchmark.__name__}"
            print(f"[{time.perf_counter() - started:6.0f} s] {label} ...", file=sys.stderr, flush=True)
            try:
                figures += benchmark(plan)
            except Missing as exc:
                skipped.append(f"{label}: {exc}")
                print(f"          skipped: {exc}", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started

    print(text_table(figures))
    for line in skipped:
        print(f"skipped {line}")
    print(f"\n{len(figures)} figures in {elapsed / 60:.1f} minutes")
    if out:
        out.write_text(markdown(figures, skipped, plan, elapsed), encoding="utf-8")
        print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


def text_table(figures: list[Figure]) -> str:
    rows = [("figure", "median", "spread (min–max)", "target", "")]
    section = None
    for f in figures:
        if f.section != section:
            section = f.section
            rows.append((f"== {section}", "", "", "", ""))
        rows.append((f.name, f.value(), f.spread(), f.target, f.verdict()))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i != 1 else cell.rjust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in rows
    )


def markdown(figures: list[Figure], skipped: list[str], plan: Plan, elapsed: float) -> str:
    env = environment()
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m bench` (see [README.md](README.md) for what each figure means). Each figure is the",
        "median over repeated runs, with the lowest and highest run; ratios are taken run by run against a reference",
        "measured in the same run.",
        "",
        f"- Date: {env['date']}",
        f"- Machine: {env['cpu']}, {env['cores']} cores, {env['memory']}; {env['os']}",
        f"- Python {env['python']}; packages: {', '.join(f'{k} {v}' for k, v in env['packages'].items())}",
        f"- System: {', '.join(f'{k} {v}' for k, v in env['system'].items())}",
        f"- Code: {env['commit']}",
        f"- Plan: {plan_text(plan)}",
        f"- Whole run: {elapsed / 60:.1f} minutes",
        "",
    ]
    section = None
    for f in figures:
        if f.section != section:
            section = f.section
            lines += [
                "",
                f"## {section}",
                "",
                "| figure | median | spread (min–max) | target | | note |",
                "|---|---:|---|---|---|---|",
            ]
        cells = [f.name, f.value(), f.spread(), f.target, f.verdict(), f.note]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if skipped:
        lines += ["", "## Skipped", ""] + [f"- {line}" for line in skipped]
    targets = [f for f in figures if f.met is not None]
    if targets:
        lines += ["", "## Targets", ""]
        lines += [f"- {'met' if f.met else '**missed**'}: {f.name}: {f.value()} (target {f.target})" for f in targets]
    lines += [
        "",
        "<details><summary>Every run (JSON)</summary>",
        "",
        "```json",
        json.dumps(
            [
                {"section": f.section, "name": f.name, "unit": f.unit, "runs": [round(r, 6) for r in f.runs]}
                for f in figures
            ],
            indent=1,
            ensure_ascii=False,
        ),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


def plan_text(plan: Plan) -> str:
    return (
        f"render ×{plan.render_repeats} per draft; MJML {plan.mjml_batches} batches of {plan.mjml_per_batch} "
        f"after {plan.mjml_warmup} warm-up renders; startup (python -c pass, --help, check, the floor) "
        f"×{plan.startup_repeats}; send {plan.send_recipients:,} "
        f"(DKIM off) and {plan.send_dkim_recipients:,} (DKIM on) recipients ×{plan.send_repeats} at N="
        f"{', '.join(map(str, plan.send_connections))}; pacing {plan.pacing_rate:.0f}/min for "
        f"{plan.pacing_seconds:.0f} s ×{plan.pacing_repeats}; "
        f"DKIM: {plan.signature_messages} signatures ×{plan.signature_repeats} ({plan.dkimpy_messages} with "
        f"dkimpy), send {plan.dkim_recipients:,} off/RSA/Ed25519 at N={plan.dkim_connections} ×{plan.dkim_repeats}; "
        f"scale {plan.scale_sizes[0]:,} ×{plan.scale_repeats[0]}"
        f" and {plan.scale_sizes[1]:,} ×{plan.scale_repeats[1]}; resume ×{plan.resume_repeats}"
    )


def environment() -> dict:
    def run(*command: str) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    memory = next(
        (
            f"{int(line.split()[1]) / 1024 / 1024:.1f} GB RAM"
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal:")
        ),
        "",
    )
    os_name = next(
        (
            line.split("=", 1)[1].strip('"')
            for line in _read("/etc/os-release").splitlines()
            if line.startswith("PRETTY_NAME=")
        ),
        platform.platform(),
    )
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = "not installed"
    system = {}
    postconf = next((f"{d}/postconf" for d in SBIN if os.path.exists(f"{d}/postconf")), None)
    if postconf:
        system["postfix"] = run(postconf, "-d", "-h", "mail_version") or "?"
    if node := run("node", "--version"):
        system["node"] = node
    mjml = BENCH / "node" / "node_modules" / "mjml" / "package.json"
    if mjml.exists():
        system["mjml (npm)"] = json.loads(mjml.read_text())["version"]
    commit = run("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    dirty = run("git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no")
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "os": os_name,
        "python": platform.python_version(),
        "packages": packages,
        "system": system,
        "commit": f"{commit}{' with uncommitted changes' if dirty else ''}" if commit else "unknown",
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
