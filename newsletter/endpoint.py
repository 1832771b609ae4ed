"""The one-click unsubscribe endpoint (RFC 8058), for teams that can run a small web service.

`POST {path}/{token}` with `List-Unsubscribe=One-Click` (what mail clients send) or from the page's
button unsubscribes at once: no redirect, no cookies, harmless when repeated. `GET` shows a page with
the button, so a link scanner opening the URL unsubscribes nobody. A tampered or expired token gets a
plain page that says nothing about why. It writes the suppression list every send reads.

A running send holds the ledger for a while, so the database work runs in the thread pool with a short
busy timeout, never on the event loop. An unsubscribe the ledger cannot take at once is written durably
to a spool folder beside it and recorded as soon as the ledger is free (202: "takes effect in a few
minutes"); what cannot wait (the page, subscribing again) answers 503 with Retry-After. Bodies over
MAX_BODY are refused (413) without being read, and the access log never shows a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from newsletter.config import Settings
from newsletter.errors import BadToken, NewsletterError
from newsletter.ledger import Ledger
from newsletter.unsubscribe import MAX_AGE, read_token

UNSUBSCRIBED = "unsubscribed"
SOURCE = "web"
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}
MAX_BODY = 8 * 1024
"""Bytes. A one-click POST says `List-Unsubscribe=One-Click` (26 bytes, or a small multipart form)."""
BUSY_TIMEOUT = 1.0
"""Seconds to wait for a ledger locked by a send before spooling the unsubscribe instead."""
RETRY_EVERY = 5.0
"""Seconds between attempts to record spooled unsubscribes while any wait."""
RETRY_AFTER = "60"
UNAVAILABLE = (sqlite3.Error, NewsletterError, OSError)
"""What a ledger that is locked (or damaged), or a spool that cannot be written, raises: not possible now."""

log = logging.getLogger("uvicorn.error")


def prefix(settings: Settings) -> str:
    """The path the links use: that of `unsubscribe_url`, or /unsubscribe."""
    url = settings.list.unsubscribe_url
    return (urlsplit(url).path.rstrip("/") if url else "") or "/unsubscribe"


def spool_folder(ledger: Path) -> Path:
    """Beside the ledger, named after it: `newsletter.db-unsubscribes/`."""
    return ledger.with_name(f"{ledger.name}-unsubscribes")


class Spool:
    """Unsubscribes the ledger could not take at once: one small file each, kept until recorded.

    One file per unsubscribe (written whole, then renamed into place) needs no locking between the
    requests that add and the task that drains; recording one twice is harmless (the first reason stays).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lock = threading.Lock()
        """Held while draining and while subscribing someone again, so an old unsubscribe never undoes it."""

    def add(self, email: str, reason: str) -> None:
        self.folder.mkdir(mode=0o700, exist_ok=True)
        name = f"{time.time_ns():020d}-{secrets.token_hex(4)}.json"
        partial = self.folder / f".{name}"
        with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as file:
            json.dump({"email": email, "reason": reason}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, self.folder / name)
        folder = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename survives a power cut too
        finally:
            os.close(folder)

    def entries(self) -> list[tuple[Path, str, str]]:
        """(file, email, reason) of every waiting unsubscribe, oldest first."""
        try:
            files = sorted(p for p in self.folder.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
        except FileNotFoundError:
            return []
        found = []
        for path in files:
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
                found.append((path, str(entry["email"]), str(entry["reason"])))
            except FileNotFoundError:
                continue  # recorded meanwhile
            except (ValueError, KeyError, TypeError):
                log.warning("%s is not a spooled unsubscribe: left for a person to look at", path)
        return found

    def waiting(self, email: str | None = None) -> bool:
        return any(email is None or e.lower() == email.lower() for _, e, _ in self.entries())

    def drain(self, ledger: Ledger) -> int:
        """Record the waiting unsubscribes (the caller holds `lock`); raises when the ledger is still busy."""
        done = 0
        for path, email, reason in self.entries():
            ledger.suppress(email, reason, SOURCE)
            path.unlink(missing_ok=True)
            done += 1
        return done


class HideTokens(logging.Filter):
    """Keeps tokens out of uvicorn's access log, which writes each request's path: `/unsubscribe/[token]`."""

    TOKEN = re.compile(r"[A-Za-z0-9_.~%-]{20,}")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.TOKEN.sub("[token]", a) if isinstance(a, str) else a for a in record.args)
        return True


_HIDE_TOKENS = HideTokens()


def web_page(
    settings: Settings, heading: str, body: str, status: int = 200, headers: dict[str, str] | None = None
) -> HTMLResponse:
    """A page of the reader-facing web service: `heading` is plain text, `body` HTML whose values the caller escaped."""
    colour = settings.brand.colour  # checked by the settings: `#` and six hex digits
    heading = html.escape(heading)
    return HTMLResponse(
        f'<!DOCTYPE html><html lang="en-GB"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{heading}</title>'
        '<style>body{font:18px/1.5 -apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1f2933;'
        "max-width:36em;margin:40px auto;padding:0 16px}button{font:inherit;padding:8px 18px;"
        f"background:{colour};color:#fff;border:0;border-radius:4px}}</style></head>"
        f"<body><main><h1>{heading}</h1>{body}</main></body></html>",
        status_code=status,
        headers=HEADERS | (headers or {}),
    )


def token_reader(request: Request, settings: Settings, secret: str, max_age: int) -> str | None:
    """The address of the link's token (the path's `{token}`), or None when it is forged, expired or not ours."""
    try:
        email, list_id = read_token(request.path_params["token"], secret, max_age)
    except BadToken:
        return None
    return email if list_id == settings.list.id else None


def busy_page(settings: Settings) -> HTMLResponse:
    """503 while a send holds the ledger: nothing was done, and the reader is told to try again."""
    return web_page(
        settings,
        "Please try again in a minute",
        "<p>The list is being updated just now. Nothing has changed yet.</p>",
        status=503,
        headers={"Retry-After": RETRY_AFTER},
    )


def unsubscribed(settings: Settings, email: str, now: bool) -> HTMLResponse:
    """The answer to an unsubscribe: recorded `now` (200), or spooled, to take effect in minutes (202)."""
    who, title = html.escape(email), html.escape(settings.list.name)
    if now:
        return web_page(settings, "You are unsubscribed", f"<p>{who} will not get the {title} again.</p>")
    return web_page(
        settings,
        "You are unsubscribed",
        f"<p>{who} will not get the {title} again. It takes effect within "
        "a few minutes: there is no need to do anything else.</p>",
        status=202,
    )


def create_app(
    settings: Settings,
    secret: str,
    max_age: int = MAX_AGE,
    *,
    busy_timeout: float = BUSY_TIMEOUT,
    retry_every: float = RETRY_EVERY,
) -> Starlette:
    from newsletter.manage import routes as manage_routes  # it imports this module's pieces

    base = prefix(settings)
    title = html.escape(settings.list.name)  # every name on the pages is the list's, from newsletter.toml
    spool = Spool(spool_folder(settings.ledger))
    logging.getLogger("uvicorn.access").addFilter(_HIDE_TOKENS)

    def page(heading: str, body: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
        return web_page(settings, heading, body, status, headers)

    def recipient(request: Request) -> str | None:
        return token_reader(request, settings, secret, max_age)

    def invalid() -> HTMLResponse:
        return page(
            "This link does not work",
            "<p>Please use the link in your latest email, or reply to it and we will take you off the list.</p>",
            status=400,
        )

    def busy() -> HTMLResponse:
        return busy_page(settings)

    def form(action: str, button: str) -> str:
        return f'<form method="post" action="{html.escape(action)}"><button type="submit">{button}</button></form>'

    def ledger() -> Ledger:
        """The ledger with a short busy timeout: a send's lock makes a request wait a second, not thirty."""
        opened = Ledger(settings.ledger)
        opened.db.execute(f"PRAGMA busy_timeout = {round(busy_timeout * 1000)}")
        return opened

    # -- database work, in the thread pool ------------------------------------------------------------

    def suppression(email: str) -> str | None:
        if spool.waiting(email):
            return f"{UNSUBSCRIBED} (waiting)"
        with ledger() as opened:
            return opened.suppression(email)

    def record(email: str, reason: str) -> bool:
        """True when the ledger has it now; False when it is spooled to be recorded once the ledger is free."""
        try:
            with ledger() as opened:
                opened.suppress(email, reason, SOURCE)
            return True
        except UNAVAILABLE as exc:
            log.warning("ledger unavailable (%s): an unsubscribe is spooled in %s", exc, spool.folder)
        spool.add(email, reason)  # OSError when not even this works: the reader is asked to try again
        return False

    def resubscribe_now(email: str) -> None:
        with spool.lock, ledger() as opened:
            spool.drain(opened)
            reason = opened.suppression(email)
            if reason is not None and reason.startswith(UNSUBSCRIBED):  # never undo a bounce from here
                opened.unsuppress(email)

    def drain() -> int:
        with spool.lock, ledger() as opened:
            return spool.drain(opened)

    async def keep_draining() -> None:
        """Record spooled unsubscribes: at startup, then every `retry_every` seconds while any wait."""
        failing = False
        while True:
            if await run_in_threadpool(spool.waiting):
                try:
                    done = await run_in_threadpool(drain)
                except UNAVAILABLE as exc:
                    if not failing:
                        log.warning(
                            "spooled unsubscribes wait for the ledger (%s); trying every %g s", exc, retry_every
                        )
                    failing = True
                else:
                    failing = False
                    log.info("recorded %d spooled unsubscribe(s)", done)
            await asyncio.sleep(retry_every)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(keep_draining())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- requests -------------------------------------------------------------------------------------

    async def small_body(request: Request) -> bytes | None:
        """The body, or None as soon as it is known to be over MAX_BODY (never read further than that)."""
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            return None
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return None
        return body

    async def show(request: Request) -> HTMLResponse:
        email = recipient(request)
        if email is None:
            return invalid()
        token = request.path_params["token"]
        try:
            reason = await run_in_threadpool(suppression, email)
        except UNAVAILABLE:
            return busy()
        who = html.escape(email)
        if reason is None:
            return page(
                f"Unsubscribe from the {settings.list.name}?",
                f"<p>{who} will no longer get the {title}.</p>{form(f'{base}/{token}', 'Unsubscribe')}",
            )
        return page(
            "You are unsubscribed",
            f"<p>{who} no longer gets the {title}.</p>"
            + (
                f"<p>Changed your mind?</p>{form(f'{base}/{token}/resubscribe', 'Subscribe again')}"
                if reason.startswith(UNSUBSCRIBED) and not reason.endswith("(waiting)")
                else ""
            ),
        )

    async def unsubscribe(request: Request) -> HTMLResponse:
        body = await small_body(request)
        if body is None:
            return page("Too much data", "<p>This address only takes a click of its button.</p>", status=413)
        email = recipient(request)
        if email is None:
            return invalid()
        # RFC 8058 clients post `List-Unsubscribe=One-Click` (url-encoded or multipart); the page's button posts
        # nothing. Either way the POST is the request: the body only says which it was.
        one_click = b"List-Unsubscribe=One-Click" in body
        try:
            now = await run_in_threadpool(record, email, f"{UNSUBSCRIBED} ({'one-click' if one_click else 'web page'})")
        except UNAVAILABLE as exc:
            log.error("cannot record or spool an unsubscribe: %s", exc)
            return busy()
        return unsubscribed(settings, email, now)

    async def resubscribe(request: Request) -> HTMLResponse:
        email = recipient(request)
        if email is None:
            return invalid()
        try:
            await run_in_threadpool(resubscribe_now, email)
        except UNAVAILABLE:
            return busy()
        return page("You are subscribed again", f"<p>{html.escape(email)} will get the next {title}.</p>")

    from newsletter.signup import SignUp  # the sign-up pages share this app, its page shell and its ledger

    signup = SignUp(settings, secret, ledger=ledger, page=page, busy=busy, small_body=small_body, spool=spool)
    return Starlette(
        routes=[
            *signup.routes(),
            Route(f"{base}/{{token}}", show, methods=["GET"]),
            Route(f"{base}/{{token}}", unsubscribe, methods=["POST"]),
            Route(f"{base}/{{token}}/resubscribe", resubscribe, methods=["POST"]),
            *manage_routes(settings, secret, max_age, open_ledger=ledger, unsubscribe=record, waiting=spool.waiting),
        ],
        lifespan=lifespan,
    )


def serve(settings: Settings, secret: str, host: str, port: int) -> None:
    import uvicorn

    Path(settings.ledger).parent.mkdir(parents=True, exist_ok=True)
    uvicorn.run(create_app(settings, secret), host=host, port=port, server_header=False, proxy_headers=True)
