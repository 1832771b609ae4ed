"""Every benchmark in bench/ run on a tiny size, so they cannot rot (the real run is `python -m bench`).

Benchmarks that need Postfix's smtp-sink/smtp-source or Node are skipped where those are not installed.
The tests never install anything: the Node comparison runs only if `python -m bench` has already put the
`mjml` npm package into bench/node/node_modules (no package registry is reached at test time).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT))  # `bench` is a folder at the root, beside `newsletter`

from bench import dkim, pacing, render, scale, send
from bench.common import Figure, Missing, Plan

PLAN = dataclasses.replace(Plan.tiny(), install_node=False)


def run(benchmark) -> list[Figure]:
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


def test_the_tests_never_run_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without bench/node/node_modules the Node comparison is skipped, never installed (that is python -m bench's)."""
    (tmp_path / "package.json").write_text("{}")
    monkeypatch.setattr(render, "NODE_DIR", tmp_path)
    monkeypatch.setattr(render, "tool", lambda name, package: f"/usr/bin/{name}")
    ran: list[object] = []
    monkeypatch.setattr(render.subprocess, "run", lambda *args, **kwargs: ran.append(args))
    with pytest.raises(Missing, match="the tests never do"):
        render.mjml_step(PLAN)
    assert ran == []
    assert Plan().install_node and Plan.tiny().install_node and not PLAN.install_node


def test_startup() -> None:
    run(render.startup)


def test_send_throughput() -> None:
    figures = run(send.throughput)
    assert by_name(figures, "product send, DKIM on, N=1").median > 0


def test_dkim_signature_cost() -> None:
    figures = run(dkim.signature_cost)
    dkimpy = by_name(figures, "relaxed/simple")
    ours = by_name(figures, "RSA-SHA256, with the variant's body pieces")
    assert ours.median * 5 < dkimpy.median  # OpenSSL's RSA and a body hashed mostly once: far below dkimpy's


def test_dkim_send_on_and_off() -> None:
    figures = run(dkim.on_off)
    ratio = by_name(figures, "DKIM on (RSA) / DKIM off")
    assert ratio.target == "≥ 0.8" and ratio.met is not None
    assert "newsletter.signing" in by_name(figures, "DKIM on (RSA-SHA256").note


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
    assert full.dkim_recipients == 3_000 and full.dkim_connections == 4
    assert Path(ROOT / "bench" / "node" / "package.json").exists()
