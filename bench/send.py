"""2. Send throughput: the product's send against Postfix's smtp-source, both into the same smtp-sink."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from bench import dkim as signing
from bench.common import (
    AUTHORITIES,
    SAMPLE,
    SECRET,
    UNSUBSCRIBE_URL,
    Figure,
    Plan,
    dkim_key,
    ratio_runs,
    run_worker,
    smtp_sink,
    tool,
    write_lists,
)

SECTION = "2. Send throughput"
TARGET_CONNECTIONS = 4
TARGET_RATIO = 0.5


def throughput(plan: Plan) -> list[Figure]:
    source = tool("smtp-source", "postfix")
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp, smtp_sink() as port:
        work = Path(tmp)
        key = dkim_key(work)
        for dkim in (False, True):
            count = plan.send_dkim_recipients if dkim else plan.send_recipients
            lists = work / f"recipients-{count}"
            if not lists.exists():
                write_lists(lists, count)
            message = write_message(work / f"message-{'dkim' if dkim else 'plain'}.eml", key if dkim else None)
            label = "DKIM on" if dkim else "DKIM off"
            for connections in plan.send_connections:
                reference, product = [], []
                for repeat in range(plan.send_repeats):
                    # Interleaved: each product run sits next to its reference run, under the same conditions.
                    reference.append(smtp_source(source, port, connections, plan.send_recipients, message))
                    ledger = work / f"ledger-{dkim}-{connections}-{repeat}.db"
                    args = [
                        "--port",
                        str(port),
                        "--recipients",
                        str(lists),
                        "--ledger",
                        str(ledger),
                        "--connections",
                        str(connections),
                    ]
                    result = run_worker(*args, *(["--dkim-key", str(key)] if dkim else []))
                    if result["sent"] != count or result["ledger_sent"] != count:
                        raise RuntimeError(f"the send did not reach everyone: {result}")
                    product.append(count / result["send_s"])
                    for path in work.glob(f"{ledger.name}*"):
                        path.unlink()
                size = message.stat().st_size
                figures.append(
                    Figure(
                        SECTION,
                        f"smtp-source -d, {label}, N={connections} ({size / 1024:.0f} KB message)",
                        "msg/s",
                        reference,
                    )
                )
                figures.append(
                    Figure(
                        SECTION,
                        f"product send, {label}, N={connections}, {count:,} recipients, ledger on",
                        "msg/s",
                        product,
                    )
                )
                target = dkim is False and connections == TARGET_CONNECTIONS
                ratios = ratio_runs(product, reference)
                figures.append(
                    Figure(
                        SECTION,
                        f"product / smtp-source, {label}, N={connections}",
                        "x",
                        ratios,
                        target=f"≥ {TARGET_RATIO}" if target else "",
                        met=min(ratios) >= TARGET_RATIO if target else None,
                    )
                )
        # For context: the reference as the issue's command line gives it, a new connection per message.
        message = work / "message-plain.eml"
        fresh = [
            smtp_source(source, port, TARGET_CONNECTIONS, plan.send_recipients, message, keep_connection=False)
            for _ in range(plan.send_repeats)
        ]
        figures.append(
            Figure(
                SECTION,
                f"smtp-source without -d (a connection per message), DKIM off, N={TARGET_CONNECTIONS}",
                "msg/s",
                fresh,
                note="context only: the product keeps its connections open, as smtp-source -d does",
            )
        )
    return figures


def write_message(path: Path, key: Path | None) -> Path:
    """One of our real composed messages (the Birmingham variant, a synthetic recipient), for smtp-source -F.

    smtp-source appends CRLF to each line it reads, so the file has LF line ends: on the wire it is
    byte for byte the message the product sends, DKIM-Signature included when `key` is given.
    """
    from newsletter.config import Settings
    from newsletter.load import load_draft
    from newsletter.message import Composer
    from newsletter.recipients import Recipient, load_authorities
    from newsletter.render import render

    authorities = load_authorities(AUTHORITIES)
    issue = load_draft(SAMPLE, {a.slug: a for a in authorities}).issue
    settings = Settings.model_validate(
        {"list": {"unsubscribe_url": UNSUBSCRIBE_URL}, "dkim": {"selector": "bench"} if key else {}}
    )
    composer = Composer(
        issue, render(issue, authorities[0]), settings, SECRET, dkim_key=key.read_bytes() if key else None
    )
    person = Recipient("priya.sharma.0@birmingham.example.org", "Priya Sharma", authorities[0].slug)
    path.write_bytes(composer.compose(person).data.replace(b"\r\n", b"\n"))
    return path


def smtp_source(
    source: str, port: int, sessions: int, count: int, message: Path, keep_connection: bool = True
) -> float:
    """Messages per second of `smtp-source [-d] -s SESSIONS -m COUNT -F message` into the sink."""
    command = [
        source,
        *(["-d"] if keep_connection else []),
        "-s",
        str(sessions),
        "-m",
        str(count),
        "-f",
        "a@example.org",
        "-t",
        "b@example.org",
        "-F",
        str(message),
        f"127.0.0.1:{port}",
    ]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"smtp-source failed ({result.returncode}): {result.stderr}")
    return count / elapsed


BENCHMARKS = (throughput, *signing.BENCHMARKS)
