"""2b. DKIM: the cost of one signature (dkimpy against newsletter.signing), and the send with DKIM on against off.

The send figures run the product's own path (`newsletter.send.Job` in a fresh `bench.worker`): the
Composer prepares each signature and the job's signing process (newsletter.signing.SigningProcess) makes it.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import (
    AUTHORITIES,
    SAMPLE,
    SECRET,
    UNSUBSCRIBE_URL,
    Figure,
    Plan,
    cpu_seconds,
    dkim_key,
    ed25519_key,
    ratio_runs,
    run_worker,
    smtp_sink,
    write_lists,
)

SECTION = "2b. DKIM"
TARGET_CONNECTIONS = 4
TARGET_RATIO = 0.8
SELECTOR = "bench"


@contextmanager
def captured_parts() -> Iterator[deque]:
    """Each `_Part.encode(fields)` result, as (part, chunks), the last two kept: a message's two parts."""
    from newsletter import message

    recent: deque = deque(maxlen=2)
    original = message._Part.encode

    def encode(part: object, fields: dict[str, str]) -> list[bytes]:
        chunks = original(part, fields)
        recent.append((part, chunks))
        return chunks

    message._Part.encode = encode
    try:
        yield recent
    finally:
        message._Part.encode = original


def body_pieces(data: bytes, recent: deque) -> list[bytes] | None:
    """The pieces `data`'s body was joined from: its two parts' chunks, then the closing boundary."""
    if len(recent) < 2:
        return None
    start = data.find(b"\r\n\r\n") + 4
    pieces = [*recent[0][1], *recent[1][1]]
    closing = data[start + sum(map(len, pieces)) :]
    if not closing.startswith(b"--") or len(closing) > 100:
        return None
    return [*pieces, closing]


# --- time per signature -------------------------------------------------------------------------------


def _messages(count: int) -> tuple[list[tuple[bytes, list[bytes] | None]], list[bytes], str]:
    """`count` readers' messages of one variant, unsigned, with the pieces of each body; the headers message.py
    signs; the domain."""
    from newsletter.config import Settings
    from newsletter.load import load_draft
    from newsletter.message import SIGNED_HEADERS, Composer
    from newsletter.recipients import Recipient, load_authorities
    from newsletter.render import render

    authorities = load_authorities(AUTHORITIES)
    issue = load_draft(SAMPLE, {a.slug: a for a in authorities}).issue
    settings = Settings.model_validate({"list": {"unsubscribe_url": UNSUBSCRIBE_URL}})
    composer = Composer(issue, render(issue, authorities[0]), settings, SECRET)
    names = ["Priya Sharma", "Zoë Okafor", "Lambert, Tom", "Siân O'Neil"]
    messages = []
    with captured_parts() as recent:
        for i in range(count):
            reader = Recipient(f"reader.{i}@birmingham.example.org", names[i % len(names)], authorities[0].slug)
            data = composer.compose(reader).data
            messages.append((data, body_pieces(data, recent)))
    signed = [h for h in SIGNED_HEADERS if h != b"reply-to" or issue.reply_to]
    return messages, signed, settings.list.domain


def _per_message(sign: object, messages: list, repeats: int) -> list[float]:
    """Microseconds per message, one figure per pass over `messages` (after one warm-up message)."""
    sign(*messages[0])
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for data, pieces in messages:
            sign(data, pieces)
        runs.append((time.perf_counter() - start) / len(messages) * 1e6)
    return runs


def signature_cost(plan: Plan) -> list[Figure]:
    """One DKIM signature of a real 56 KB message: dkimpy (as message.py calls it, and relaxed/relaxed as we
    sign) against newsletter.signing (whole message each time, and with the variant's pieces)."""
    import dkim

    from newsletter.signing import Signer

    messages, signed, domain = _messages(plan.signature_messages)
    few = messages[: plan.dkimpy_messages]
    with tempfile.TemporaryDirectory(prefix="bench-dkim-") as tmp:
        rsa_pem, ed_pem = dkim_key(Path(tmp)).read_bytes(), ed25519_key(Path(tmp)).read_bytes()
    figures: list[Figure] = []

    def dkimpy(canonicalize: tuple[bytes, bytes]) -> object:
        return lambda data, pieces: dkim.sign(
            data, SELECTOR.encode(), domain.encode(), rsa_pem, include_headers=signed, canonicalize=canonicalize
        )

    today = _per_message(dkimpy((b"relaxed", b"simple")), few, plan.signature_repeats)
    relaxed = _per_message(dkimpy((b"relaxed", b"relaxed")), few, plan.signature_repeats)
    version = _version("dkimpy")
    figures.append(
        Figure(
            SECTION,
            f"DKIM signature, dkimpy {version} RSA-SHA256 relaxed/simple (message.py until now)",
            "µs",
            today,
            note="pure-Python RSA; per message, 56 KB",
        )
    )
    figures.append(Figure(SECTION, f"DKIM signature, dkimpy {version} RSA-SHA256 relaxed/relaxed", "µs", relaxed))

    def ours(key: bytes, selector: str, pieces: bool, also: list | None = None) -> object:
        signer = Signer(key, selector, domain, include_headers=signed, also=also or [])
        if pieces:
            return lambda data, body: signer.sign(data, body)
        return lambda data, body: signer.sign(data)

    whole = _per_message(ours(rsa_pem, SELECTOR, False), messages, plan.signature_repeats)
    rsa = _per_message(ours(rsa_pem, SELECTOR, True), messages, plan.signature_repeats)
    ed = _per_message(ours(ed_pem, "bench-ed", True), messages, plan.signature_repeats)
    both = _per_message(ours(rsa_pem, SELECTOR, True, [(ed_pem, "bench-ed")]), messages, plan.signature_repeats)
    figures += [
        Figure(
            SECTION,
            "DKIM signature, newsletter.signing RSA-SHA256 relaxed/relaxed, whole message each time",
            "µs",
            whole,
        ),
        Figure(
            SECTION,
            "DKIM signature, newsletter.signing RSA-SHA256, with the variant's body pieces (as Composer)",
            "µs",
            rsa,
            note="the RSA step alone (OpenSSL, 2048 bits) is about 250 µs of it",
        ),
        Figure(SECTION, "DKIM signature, newsletter.signing Ed25519-SHA256, with the body pieces", "µs", ed),
        Figure(
            SECTION,
            "DKIM signatures RSA + Ed25519 on one message, newsletter.signing, with the body pieces",
            "µs",
            both,
        ),
        Figure(
            SECTION,
            "dkimpy (as message.py called it) / newsletter.signing RSA with pieces, time per signature",
            "x",
            [statistics.median(today) / r for r in rsa],
            note="above 1: newsletter.signing is faster",
        ),
    ]
    return figures


def _version(package: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# --- the send, DKIM on against off --------------------------------------------------------------------


def on_off(plan: Plan) -> list[Figure]:
    """The product's send to `plan.dkim_recipients` at N=4, DKIM off, RSA and Ed25519, interleaved run by run.

    Beside the rates, where the CPU goes with RSA (the job, its signing process, smtp-sink: per message) and
    what that allows at most: no run can be faster than the machine's cores doing nothing else, nor than the
    job (one thread) at 100 % of one core. That bound over the same round's DKIM-off rate is the best on/off
    ratio this machine could show."""
    count, connections = plan.dkim_recipients, plan.dkim_connections
    runs: dict[str, list[float]] = {"off": [], "rsa": [], "ed25519": []}
    cpu: dict[str, list[float]] = {"job": [], "signing": [], "sink": []}
    bound: list[float] = []
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-dkim-send-") as tmp, smtp_sink() as port:
        work = Path(tmp)
        lists = work / "recipients"
        write_lists(lists, count)
        keys = {"off": None, "rsa": dkim_key(work), "ed25519": ed25519_key(work)}
        for repeat in range(plan.dkim_repeats):
            for label, key in keys.items():
                ledger = work / f"ledger-{label}-{repeat}.db"
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
                sink = cpu_seconds("smtp-sink")
                result = run_worker(*args, *(["--dkim-key", str(key)] if key else []))
                sink = cpu_seconds("smtp-sink") - sink
                if result["sent"] != count or result["ledger_sent"] != count:
                    raise RuntimeError(f"the send did not reach everyone: {result}")
                runs[label].append(count / result["send_s"])
                if label == "rsa":
                    job, signing = result["send_cpu_s"] / count * 1e6, result["signing_cpu_s"] / count * 1e6
                    cpu["job"].append(job)
                    cpu["signing"].append(signing)
                    cpu["sink"].append(sink / count * 1e6)
                    best = min(cores * 1e6 / (job + signing + cpu["sink"][-1]), 1e6 / job)
                    bound.append(best / runs["off"][-1])
                for path in work.glob(f"{ledger.name}*"):
                    path.unlink()
    how = "signed in the job's signing process (newsletter.signing.SigningProcess)"
    name = f"N={connections}, {count:,} recipients, ledger on"
    rsa_ratio = ratio_runs(runs["rsa"], runs["off"])
    return [
        Figure(SECTION, f"product send, DKIM off, {name}", "msg/s", runs["off"]),
        Figure(SECTION, f"product send, DKIM on (RSA-SHA256, 2048 bits), {name}", "msg/s", runs["rsa"], note=how),
        Figure(SECTION, f"product send, DKIM on (Ed25519-SHA256), {name}", "msg/s", runs["ed25519"], note=how),
        Figure(
            SECTION,
            f"send DKIM on (RSA) / DKIM off, N={connections}",
            "x",
            rsa_ratio,
            target=f"≥ {TARGET_RATIO}",
            met=min(rsa_ratio) >= TARGET_RATIO,
            note="run by run; judged on the worst run",
        ),
        Figure(
            SECTION,
            f"send DKIM on (Ed25519) / DKIM off, N={connections}",
            "x",
            ratio_runs(runs["ed25519"], runs["off"]),
        ),
        Figure(SECTION, "CPU per message, DKIM on (RSA): the job", "µs", cpu["job"], note="one thread"),
        Figure(SECTION, "CPU per message, DKIM on (RSA): its signing process", "µs", cpu["signing"]),
        Figure(SECTION, "CPU per message, DKIM on (RSA): smtp-sink", "µs", cpu["sink"]),
        Figure(
            SECTION,
            f"best DKIM on (RSA) / off this machine allows ({cores} cores)",
            "x",
            bound,
            note="min(cores ÷ all the CPU a message needs, one core ÷ the job's) over the round's DKIM-off rate",
        ),
    ]


BENCHMARKS = (signature_cost, on_off)
