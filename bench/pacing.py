"""3. Pacing: a send at a configured rate, timed where the relay counts, at the receiving server.

A relay's limit is per minute (600 a minute here); a 30-second run is too short for a sliding 60-second
window, so the window is scaled: at most 10 in any 1 second and 60 in any 6 seconds.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from bench.common import Figure, Plan, free_port, ratio_runs, run_worker, write_lists

SECTION = "3. Pacing"


class Recorder:
    """aiosmtpd handler: accepts every message and notes when its DATA completed (time.monotonic)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        with self.lock:
            self.times.append(time.monotonic())
        return "250 2.0.0 queued"


def busiest(times: list[float], window: float) -> int:
    """The largest number of arrivals in any window [t, t + window) that starts at an arrival."""
    times = sorted(times)
    best, end = 0, 0
    for start in range(len(times)):
        while end < len(times) and times[end] < times[start] + window:
            end += 1
        best = max(best, end - start)
    return best


def pacing(plan: Plan) -> list[Figure]:
    from aiosmtpd.controller import Controller

    rate = plan.pacing_rate
    count = round(rate / 60 * plan.pacing_seconds)
    achieved, one, six = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-pacing-") as tmp:
        work = Path(tmp)
        write_lists(work / "recipients", count)
        for repeat in range(plan.pacing_repeats):
            recorder = Recorder()
            port = free_port()
            controller = Controller(recorder, hostname="127.0.0.1", port=port, data_size_limit=10 * 1024 * 1024)
            controller.start()
            try:
                result = run_worker(
                    "--port",
                    str(port),
                    "--recipients",
                    str(work / "recipients"),
                    "--ledger",
                    str(work / f"ledger-{repeat}.db"),
                    "--connections",
                    str(plan.pacing_connections),
                    "--rate",
                    str(rate),
                )
            finally:
                controller.stop()
            times = sorted(recorder.times)
            if result["sent"] != count or len(times) != count:
                raise RuntimeError(f"{len(times)} of {count} messages arrived: {result}")
            achieved.append((len(times) - 1) / (times[-1] - times[0]) * 60)
            one.append(busiest(times, 1.0))
            six.append(busiest(times, 6.0))
    per_second, per_six = rate / 60, rate / 10
    label = f"{rate:.0f}/min, {plan.pacing_seconds:.0f} s, N={plan.pacing_connections}"
    return [
        Figure(SECTION, f"achieved rate at the server ({label})", "msg/min", achieved),
        Figure(
            SECTION,
            "achieved rate / configured rate",
            "x",
            [a / rate for a in achieved],
            target="0.95–1.00",
            met=all(0.95 <= a / rate <= 1.0 for a in achieved),
            note="the product paces 1 % under the rate",
        ),
        Figure(
            SECTION,
            f"busiest 1-second window / {per_second:.0f}",
            "x",
            ratio_runs(one, [per_second] * len(one)),
            target="≤ 1",
            met=max(one) <= per_second,
            note=f"counts: {', '.join(map(str, one))}",
        ),
        Figure(
            SECTION,
            f"busiest 6-second window / {per_six:.0f}",
            "x",
            ratio_runs(six, [per_six] * len(six)),
            target="≤ 1",
            met=max(six) <= per_six,
            note=f"counts: {', '.join(map(str, six))}",
        ),
    ]


BENCHMARKS = (pacing,)
