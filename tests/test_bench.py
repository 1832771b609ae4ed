"""Every benchmark in bench/ run on a tiny size, so they cannot rot (the real run is `python -m bench`).

Benchmarks that need Postfix's smtp-sink/smtp-source or Node are skipped where those are not installed.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT))  # `bench` is a folder at the root, beside `newsletter`

from bench import pacing, render, scale, send  # noqa: E402
from bench.common import Figure, Missing, Plan  # noqa: E402

PLAN = Plan.tiny()


def run(benchmark) -> list[Figure]:  # noqa: ANN001
    try:
        figures = benchmark(PLAN)
    except Missing as exc:
        pytest.skip(str(exc))
    assert figures
    for figure in figures:
        assert figure.runs and all(math.isfinite(r) and r >= 0 for r in figure.runs), figure
        assert figure.value() and figure.spread()
    return figures


def by_name(figures: list[Figure], fragment: str) -> Figure:
    (figure,) = [f for f in figures if fragment in f.name]
    return figure


def test_render_drafts() -> None:
    figures = run(render.drafts)
    assert by_name(figures, "Gmail").met  # the sample issue is far from clipping


def test_mjml_against_node() -> None:
    figures = run(render.mjml_step)
    assert by_name(figures, "Node time / mjml-python time").median > 0


def test_check_command() -> None:
    run(render.check_command)


def test_send_throughput() -> None:
    figures = run(send.throughput)
    assert by_name(figures, "product send, DKIM on, N=1").median > 0


def test_pacing() -> None:
    figures = run(pacing.pacing)
    assert by_name(figures, "busiest 1-second window").runs  # the limit itself is tested in test_send.py


def test_scale_and_resume() -> None:
    figures = run(scale.scale_and_resume)
    assert by_name(figures, "nothing left").runs


def test_busiest_window() -> None:
    assert pacing.busiest([0.0, 0.5, 0.99, 1.0, 1.5], 1.0) == 3
    assert pacing.busiest([], 1.0) == 0


def test_plan_sizes_are_what_the_issue_asks() -> None:
    full = Plan()
    assert full.send_recipients == 10_000 and full.send_connections == (1, 4, 8)
    assert full.scale_sizes == (1_000, 100_000) and full.pacing_rate == 600 and full.pacing_seconds == 30
    assert Path(ROOT / "bench" / "node" / "package.json").exists()
