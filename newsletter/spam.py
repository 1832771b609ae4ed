"""A spam score for one real message, from SpamAssassin's local rules (no network tests).

Scores what recipients' filters would see before an issue goes out; no tracking pixels or redirect
links are ever added, so what is scored is what is sent.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess

from newsletter.errors import SpamAssassinUnavailable

BAD_RULES = re.compile(r"^(MISSING_\w+|MPART_ALT_DIFF\w*|HTML_IMAGE_ONLY_\w+|HTML_SHORT_LINK_IMG\w*)$")
"""Rules that mean the message is malformed, not just unlucky."""


@dataclasses.dataclass(frozen=True)
class Score:
    points: float
    required: float
    rules: list[tuple[str, float, str]]
    """(rule, points, description) for every rule hit."""

    @property
    def bad_rules(self) -> list[str]:
        return [name for name, _, _ in self.rules if BAD_RULES.match(name)]


def score(message: bytes, timeout: float = 120) -> Score:
    """Run `spamassassin -L -t` (local tests only) on the message."""
    program = shutil.which("spamassassin")
    if program is None:
        raise SpamAssassinUnavailable("SpamAssassin is not installed (Debian: apt-get install spamassassin)")
    try:
        result = subprocess.run([program, "-L", "-t"], input=message, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SpamAssassinUnavailable(f"SpamAssassin did not answer in {timeout:g} s") from None
    try:
        return parse(result.stdout.decode("utf-8", "replace"))
    except ValueError:
        said = result.stderr.decode("utf-8", "replace").strip().splitlines()
        why = f": {said[0].strip()}" if said else ""
        raise SpamAssassinUnavailable(
            f"SpamAssassin gave no report (exit code {result.returncode}{why}); `spamassassin --lint` says more"
        ) from None


def parse(report: str) -> Score:
    """Read the "Content analysis details" table SpamAssassin appends to the message."""
    head = re.search(r"Content analysis details:\s+\((-?[\d.]+) points, (-?[\d.]+) required\)", report)
    if head is None:
        raise ValueError("SpamAssassin gave no report")
    rules = []
    table = report[head.end() :].split("\n")
    for line in table:
        match = re.match(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s+(.*)$", line)
        if match:
            rules.append((match[2], float(match[1]), match[3].strip()))
        elif rules and line.startswith(" " * 5) and line.strip():
            name, points, description = rules[-1]
            rules[-1] = (name, points, f"{description} {line.strip()}")
    return Score(float(head[1]), float(head[2]), rules)
