"""One send of the sample issue through the product's own code path, in a fresh interpreter.

    python -m bench.worker --port PORT --recipients DIR --ledger FILE [--connections N] [--rate R] [--dkim-key PEM]

Queues everyone on the lists in DIR (newsletter.send.queue_recipients), renders the sixteen variants, then
runs newsletter.send.Job over newsletter.transport.opener to smtp://127.0.0.1:PORT, and prints one line
of JSON: how many were sent, the seconds each phase took (and the CPU seconds of the send, and of the DKIM
signing process), the process's and peak RSS. A fresh process per send keeps one run's memory and warm
caches out of the next one's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path

from bench.common import SAMPLE, SECRET, UNSUBSCRIBE_URL


def peak_rss_kb() -> int:
    """VmHWM, the kernel's high-water mark of this process's resident memory (ru_maxrss where it is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _children_cpu() -> float:
    """CPU seconds of the children that have ended: the job's DKIM signing process, once the job has closed it."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--recipients", type=Path, required=True)
    parser.add_argument("--ledger", type=Path, required=True)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rate", type=float, default=1e9)
    parser.add_argument("--dkim-key", type=Path)
    parser.add_argument("--draft", type=Path, default=SAMPLE)
    args = parser.parse_args()

    started = time.perf_counter()
    from newsletter.config import Settings
    from newsletter.ledger import Ledger
    from newsletter.load import load_draft
    from newsletter.recipients import load_authorities
    from newsletter.send import Job, queue_recipients
    from newsletter.transport import opener

    settings = Settings.model_validate(
        {
            "transport": {
                "url": f"smtp://127.0.0.1:{args.port}",
                "rate_per_minute": args.rate,
                "daily_cap": None,
                "connections": args.connections,
                "timeout": 30,
            },
            "ledger": args.ledger,
            "recipients": args.recipients,
            "list": {"unsubscribe_url": UNSUBSCRIBE_URL},
            "dkim": {"selector": "bench"} if args.dkim_key else {},
        }
    )
    authorities = load_authorities(args.recipients / "authorities.yaml")
    issue = load_draft(args.draft, {a.slug: a for a in authorities}).issue
    key = args.dkim_key.read_bytes() if args.dkim_key else None
    imported = time.perf_counter()

    with Ledger(settings.ledger) as ledger:
        queue_recipients(ledger, issue, settings, authorities)
        queued = time.perf_counter()
        job = Job(
            issue,
            authorities,
            ledger,
            opener(settings.transport.url, settings.transport),
            settings,
            SECRET,
            dkim_key=key,
        )
        for authority in authorities:
            job._composer(authority.slug)  # what Job.run does first; done here so the send is timed on its own
        rendered = time.perf_counter()
        cpu, children = time.process_time(), _children_cpu()
        outcome = asyncio.run(job.run())
        finished = time.perf_counter()
        cpu, children = time.process_time() - cpu, _children_cpu() - children
        summary = ledger.summary(issue.issue)
    print(
        json.dumps(
            {
                "sent": outcome.sent,
                "deferred": outcome.deferred,
                "failed": outcome.failed,
                "ledger_sent": sum(row["sent"] for row in summary.values()),
                "startup_s": imported - started,
                "queue_s": queued - imported,
                "render_s": rendered - queued,
                "send_s": finished - rendered,
                "total_s": finished - started,
                "peak_rss_kb": peak_rss_kb(),
                "send_cpu_s": cpu,
                "signing_cpu_s": children,
            }
        )
    )


if __name__ == "__main__":
    main()
