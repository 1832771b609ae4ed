"""The check-in URL (`healthcheck_url`): a cron monitor is told at the end of every daily run how it went.

Nobody watches cron, and a job that stops running sends no report: a monitor that expects a check-in each
day notices the silence. The convention of healthchecks.io (and the monitors that copy it): a request to the
URL says the run succeeded, to the URL with `/fail` appended that it did not; the run's summary goes along
as the body, for the monitor's log. A check-in that fails is one line on stderr and never changes the run's
exit code: the monitor will notice the missing check-in itself.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

TIMEOUT_SECONDS = 10
"""A monitor that does not answer must not hold up the job's exit."""
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _check_in_url(value: str) -> str:
    """An http(s) URL; https for anything but this machine (the URL is the monitor's key, the body our summary)."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value.strip()):
        raise PydanticCustomError("url", "a check-in URL is a web address like https://hc-ping.com/<uuid>")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise PydanticCustomError("url", "use https:// for a check-in URL (http:// only to this machine)")
    return value.strip().rstrip("/")


CheckInUrl = Annotated[str, AfterValidator(_check_in_url)]


def check_in(url: str, ok: bool, summary: str) -> str | None:
    """Tell the monitor how the run went; None when it heard, else one line saying why not (no secret in it)."""
    import urllib.error
    import urllib.request  # here, not above: every command reads the settings, which check this module's URLs

    target = url if ok else f"{url}/fail"
    host = urlsplit(url).hostname
    request = urllib.request.Request(
        target,
        data=summary.encode("utf-8")[:100_000],
        method="POST",
        headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "newsletter-daily"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # the URL was checked: http(s) only
            response.read(1024)
    except urllib.error.HTTPError as exc:
        return f"the check-in at {host} was refused: HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason: Any = getattr(exc, "reason", None) or exc
        return f"the check-in at {host} failed: {reason}"
    return None
