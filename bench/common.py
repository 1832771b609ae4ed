"""What every benchmark shares: figures and their statistics, the plan (sizes, repeats), the Postfix sink,
synthetic recipient lists, and the worker subprocess that runs the product's own send path."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DRAFTS = sorted((ROOT / "drafts").glob("*.yaml"))
SAMPLE = ROOT / "drafts" / "2025-09.yaml"
AUTHORITIES = ROOT / "recipients" / "authorities.yaml"
SECRET = "bench-secret-not-for-production"
UNSUBSCRIBE_URL = "https://updates.wmchildrensservices.org.uk/unsubscribe"
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class Missing(Exception):
    """A system tool a benchmark needs is not installed (the benchmark is skipped, and says how to install it)."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and repeats. `full` is what `python -m bench` runs; `tiny` keeps every path working in the tests."""

    drafts: tuple[Path, ...] = tuple(DRAFTS)
    render_repeats: int = 5
    mjml_warmup: int = 20
    mjml_batches: int = 5
    mjml_per_batch: int = 20
    startup_repeats: int = 9
    send_recipients: int = 10_000
    send_dkim_recipients: int = 2_000
    send_connections: tuple[int, ...] = (1, 4, 8)
    send_repeats: int = 3
    pacing_rate: float = 600.0
    pacing_seconds: float = 30.0
    pacing_connections: int = 4
    pacing_repeats: int = 3
    scale_sizes: tuple[int, int] = (1_000, 100_000)
    scale_repeats: tuple[int, int] = (3, 2)
    resume_repeats: int = 3
    signature_messages: int = 200
    dkimpy_messages: int = 20
    signature_repeats: int = 5
    dkim_recipients: int = 3_000
    dkim_connections: int = 4
    dkim_repeats: int = 3
    install_node: bool = True
    """Install the `mjml` npm package into bench/node/ when it is missing (`python -m bench`); the tests never do."""

    @classmethod
    def tiny(cls) -> Plan:
        return cls(
            drafts=(SAMPLE,),
            render_repeats=1,
            mjml_warmup=1,
            mjml_batches=2,
            mjml_per_batch=1,
            startup_repeats=1,
            send_recipients=64,
            send_dkim_recipients=16,
            send_connections=(1, 2),
            send_repeats=1,
            pacing_seconds=2.0,
            pacing_connections=2,
            pacing_repeats=1,
            scale_sizes=(32, 96),
            scale_repeats=(1, 1),
            resume_repeats=1,
            signature_messages=4,
            dkimpy_messages=2,
            signature_repeats=1,
            dkim_recipients=48,
            dkim_connections=2,
            dkim_repeats=1,
        )


@dataclasses.dataclass
class Figure:
    """One measured quantity: its value in each repeated run, and the target it is held against (if any)."""

    section: str
    name: str
    unit: str
    runs: list[float]
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def low(self) -> float:
        return min(self.runs)

    @property
    def high(self) -> float:
        return max(self.runs)

    def value(self) -> str:
        return fmt(self.median, self.unit)

    def spread(self) -> str:
        if len(self.runs) < 2:
            return "1 run"
        if self.low == self.high:
            return f"all {len(self.runs)} equal"
        return f"{fmt(self.low, self.unit, bare=True)}–{fmt(self.high, self.unit, bare=True)} ({len(self.runs)} runs)"

    def verdict(self) -> str:
        if self.met is None:
            return ""
        return "met" if self.met else "MISSED"

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "median": self.median}


def fmt(value: float, unit: str, bare: bool = False) -> str:
    if unit == "x":
        text = f"{value:.2f}"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    if bare:
        return text
    return f"{text}×" if unit == "x" else f"{text} {unit}"


def ratio_runs(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Run-by-run ratios of two series measured in the same repeats (interleaved, so they share conditions)."""
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def tool(name: str, package: str) -> str:
    found = shutil.which(name) or next((f"{d}/{name}" for d in SBIN if os.access(f"{d}/{name}", os.X_OK)), None)
    if not found:
        raise Missing(f"`{name}` is not installed: apt-get install {package}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stderr.read() if process.stderr else ""
            raise RuntimeError(f"{what} exited with {process.returncode}: {output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.recv(100)  # the 220 greeting
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start listening on 127.0.0.1:{port}")


@contextmanager
def smtp_sink() -> Iterator[int]:
    """Postfix's smtp-sink on a free loopback port (accepts and discards everything); yields the port."""
    command = [tool("smtp-sink", "postfix")]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]  # it refuses to run as root
    port = free_port()
    process = subprocess.Popen(
        [*command, f"127.0.0.1:{port}", "1000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for_port(port, process, "smtp-sink")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(command: str) -> float:
    """CPU seconds (user and system) of the running processes named `command` (smtp-sink), from /proc."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended meanwhile
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if name == command:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / os.sysconf("SC_CLK_TCK")


# About one name in ten has an accent and one in fifty is written "Surname, First", as in the sample lists.
FIRST = [
    "Priya",
    "Daniel",
    "Zoë",
    "Tom",
    "Harpreet",
    "Marcus",
    "Karen",
    "Lewis",
    "Abdul",
    "Natalie",
    "James",
    "Bekka",
    "Sue",
    "Jane",
    "Michael",
    "Ayesha",
    "Gareth",
    "Siân",
    "Piotr",
    "Rhian",
]
LAST = [
    "Sharma",
    "Okafor",
    "Lambert",
    "Whitfield",
    "O'Neil",
    "Reid",
    "Hollis",
    "Adams",
    "Kahar",
    "Bevan",
    "Thomas",
    "Leigh",
    "DeWaal",
    "Carter",
    "Grant",
    "Nowak",
    "Pritchard",
    "Asante",
    "Begum",
    "Price-Jones",
]


def write_lists(directory: Path, count: int) -> list[str]:
    """`count` synthetic people spread over the sixteen authorities' lists, in the format Excel exports.

    Names mix plain ASCII, accents, apostrophes and the odd "Surname, First" (as the real lists do), so
    the To header takes every path the product has. Addresses are unique and under reserved example.org.
    """
    from newsletter.recipients import load_authorities

    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(AUTHORITIES, directory / "authorities.yaml")
    slugs = [a.slug for a in load_authorities(directory / "authorities.yaml")]
    files = {slug: open(directory / f"{slug}.csv", "w", newline="", encoding="utf-8") for slug in slugs}  # noqa: SIM115
    try:
        writers = {slug: csv.writer(handle) for slug, handle in files.items()}
        for writer in writers.values():
            writer.writerow(["email", "name", "role"])
        for i in range(count):
            slug = slugs[i % len(slugs)]
            first, last = FIRST[i % len(FIRST)], LAST[(i * 7 + i // len(FIRST)) % len(LAST)]
            name = f"{last}, {first}" if i % 50 == 7 else f"{first} {last}"
            local = f"{first}.{last}".lower().encode("ascii", "ignore").decode().replace("'", "").replace(" ", "")
            writers[slug].writerow([f"{local}.{i}@{slug}.example.org", name, "Social Worker"])
    finally:
        for handle in files.values():
            handle.close()
    return slugs


def dkim_key(directory: Path) -> Path:
    """A fresh 2048-bit RSA key in PEM, as `settings.dkim.key_file` would hold."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return path


def ed25519_key(directory: Path) -> Path:
    """A fresh Ed25519 key in PEM (PKCS#8), for DKIM's ed25519-sha256 (RFC 8463)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = directory / "dkim-ed25519.pem"
    path.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def run_worker(*args: str, timeout: float = 900) -> dict:
    """`python -m bench.worker ARGS` in a fresh interpreter; returns the JSON it prints."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.worker", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"bench.worker {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def newsletter_command() -> str:
    """The venv's `newsletter` script, beside the running interpreter (as `make setup` installs it)."""
    script = Path(sys.executable).parent / "newsletter"
    if not script.exists():
        found = shutil.which("newsletter")
        if not found:
            raise RuntimeError("the `newsletter` command is not installed: run `make setup`")
        return found
    return str(script)


def write_config(directory: Path, port: int, recipients: Path, ledger: Path, connections: int = 4) -> Path:
    """A newsletter.toml for the CLI: the sink as the relay, no rate or daily limit to speak of."""
    path = directory / "newsletter.toml"
    path.write_text(
        f'ledger = "{ledger}"\nrecipients = "{recipients}"\n\n[list]\nunsubscribe_url = "{UNSUBSCRIBE_URL}"\n\n'
        f'[transport]\nurl = "smtp://127.0.0.1:{port}"\nconnections = {connections}\nrate_per_minute = 1000000000\n'
        f"daily_cap = 100000000\ntimeout = 30\n",
        encoding="utf-8",
    )
    return path
