"""4. Memory and scale: peak RSS and time per message at two list sizes. 5. Resume: a re-run with nothing left."""

from __future__ import annotations

import os
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import (
    SAMPLE,
    SECRET,
    Figure,
    Plan,
    newsletter_command,
    ratio_runs,
    run_worker,
    smtp_sink,
    write_config,
    write_lists,
)

SECTION = "4. Memory and scale"
RESUME = "5. Resume"
CONNECTIONS = 4


def scale_and_resume(plan: Plan) -> list[Figure]:
    small, large = plan.scale_sizes
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, smtp_sink() as port:
        work = Path(tmp)
        rss: dict[int, list[float]] = {}
        per_message: dict[int, list[float]] = {}
        overall: dict[int, list[float]] = {}
        kept: Path | None = None
        for size, repeats in zip(plan.scale_sizes, plan.scale_repeats, strict=True):
            lists = work / f"recipients-{size}"
            write_lists(lists, size)
            for repeat in range(repeats):
                ledger = work / f"ledger-{size}-{repeat}.db"
                result = run_worker(
                    "--port",
                    str(port),
                    "--recipients",
                    str(lists),
                    "--ledger",
                    str(ledger),
                    "--connections",
                    str(CONNECTIONS),
                )
                if result["sent"] != size or result["ledger_sent"] != size:
                    raise RuntimeError(f"the send did not reach everyone: {result}")
                rss.setdefault(size, []).append(result["peak_rss_kb"] / 1024)
                per_message.setdefault(size, []).append(result["send_s"] / size * 1000)
                overall.setdefault(size, []).append(
                    (result["queue_s"] + result["render_s"] + result["send_s"]) / size * 1000
                )
                if size == large and kept is None:
                    kept = ledger  # the resume runs on the first large ledger
                else:
                    for path in work.glob(f"{ledger.name}*"):
                        path.unlink()
        figures.extend(
            Figure(SECTION, f"peak RSS, send to {size:,} (fresh process)", "MB", rss[size]) for size in plan.scale_sizes
        )
        rss_ratio = (
            [b / a for a in rss[small] for b in rss[large]]
            if len(rss[small]) != len(rss[large])
            else ratio_runs(rss[large], rss[small])
        )
        figures.append(
            Figure(
                SECTION,
                f"peak RSS {large:,} / {small:,}",
                "x",
                rss_ratio,
                target="≤ 1.5",
                met=max(rss_ratio) <= 1.5,
                note="every pairing of the runs",
            )
        )
        figures.append(
            Figure(SECTION, f"peak RSS at {large:,}", "MB", rss[large], target="< 200 MB", met=max(rss[large]) < 200)
        )
        figures.extend(
            Figure(
                SECTION, f"time per message, send phase, {size:,} recipients, N={CONNECTIONS}", "ms", per_message[size]
            )
            for size in plan.scale_sizes
        )
        send_ratio = [b / a for a in per_message[small] for b in per_message[large]]
        median_ratio = statistics.median(per_message[large]) / statistics.median(per_message[small])
        figures.append(
            Figure(
                SECTION,
                f"time per message {large:,} / {small:,}, send phase",
                "x",
                send_ratio,
                target="≈ 1 (median 0.8–1.25)",
                met=0.8 <= median_ratio <= 1.25,
                note=f"every pairing of the runs; ratio of the medians {median_ratio:.2f}",
            )
        )
        figures.extend(
            Figure(
                SECTION, f"time per message incl. reading lists, queueing and rendering, {size:,}", "ms", overall[size]
            )
            for size in plan.scale_sizes
        )
        assert kept is not None
        figures += resume(plan, work, port, work / f"recipients-{large}", kept, large)
    return figures


def resume(plan: Plan, work: Path, port: int, lists: Path, ledger: Path, size: int) -> list[Figure]:
    """`newsletter send` run again on a ledger where everyone has the issue: the whole process, as cron runs it."""
    config = write_config(work, port, lists, ledger, CONNECTIONS)
    env = {**os.environ, "NEWSLETTER_SECRET": SECRET}
    env.pop("NEWSLETTER_SMTP_PASSWORD", None)
    command = [newsletter_command(), "send", str(SAMPLE), "--config", str(config)]
    times = []
    for _ in range(plan.resume_repeats):
        start = time.perf_counter()
        result = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env, timeout=600)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise RuntimeError(f"the re-run failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    with sqlite3.connect(ledger) as db:
        (sent,) = db.execute("SELECT count(*) FROM deliveries WHERE status = 'sent'").fetchone()
        (total,) = db.execute("SELECT count(*) FROM deliveries").fetchone()
    if sent != size or total != size:
        raise RuntimeError(f"the re-run changed the ledger: {sent} sent of {total}")
    return [
        Figure(
            RESUME,
            f"`newsletter send` again with nothing left, {size:,}-recipient ledger (whole process)",
            "s",
            times,
            target="< 5 s",
            met=max(times) < 5,
        )
    ]


BENCHMARKS = (scale_and_resume,)
