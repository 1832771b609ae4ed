"""The "Manage your subscription" page every email's footer links: change authority, unsubscribe, download.

The link carries the reader's unsubscribe token (encrypted, dated, names the address and the list), so
the page needs no account, no cookie and no JavaScript: `GET` shows the address and three forms, and only
a `POST` changes anything (mail scanners open links). A tampered or expired token gets the same plain 400
page as the unsubscribe links.

- Changing authority writes the reader's row in `signups`: their own statement, which at send time
  replaces any authority list's row for the same address.
- Unsubscribing is the one-click endpoint's: the same suppression, spooled while a send holds the ledger.
- The download is everything `privacy.held_about` finds, as a JSON attachment.

The database work runs in the thread pool with the endpoint's short busy timeout; a ledger a send holds
gets 503 with Retry-After rather than a hung request.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from newsletter.config import Settings
from newsletter.endpoint import HEADERS, MAX_BODY, UNAVAILABLE, busy_page, log, token_reader, unsubscribed, web_page
from newsletter.ledger import Ledger
from newsletter.privacy import held_about, keyed_hash, listed_in
from newsletter.recipients import Authority, load_authorities

REASON = "unsubscribed (manage page)"
CONSENT = "chose their authority on the manage page (linked from an issue sent to them)"
"""The `consent` of a sign-up row the manage page makes for a reader who came from an authority's list."""
DOWNLOAD_NAME = "my-newsletter-data.json"


def manage_prefix(settings: Settings) -> str:
    """The path the manage links use: that of `[list] manage_url`, or `manage` beside the unsubscribe path."""
    link = settings.list.manage_link()
    return (urlsplit(link).path.rstrip("/") if link else "") or "/manage"


def routes(
    settings: Settings,
    secret: str,
    max_age: int,
    *,
    open_ledger: Callable[[], Ledger],
    unsubscribe: Callable[[str, str], bool],
    waiting: Callable[[str], bool],
) -> list[Route]:
    """The manage page's routes, for the endpoint's app.

    `open_ledger` opens the ledger with the endpoint's short busy timeout; `unsubscribe(email, reason)` is
    the endpoint's suppression (True: recorded now; False: spooled); `waiting(email)` says whether an
    unsubscribe is spooled for the address.
    """
    base = manage_prefix(settings)
    title = html.escape(settings.list.name)

    def page(heading: str, body: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
        return web_page(settings, heading, body, status, headers)

    def reader(request: Request) -> str | None:
        email = token_reader(request, settings, secret, max_age)
        return email.lower() if email else None

    def invalid() -> HTMLResponse:
        return page(
            "This link does not work",
            "<p>Please use the link in your latest email, or reply to it and we will help.</p>",
            status=400,
        )

    def busy() -> HTMLResponse:
        return busy_page(settings)

    def back(token: str) -> str:
        return f'<p><a href="{html.escape(f"{base}/{token}")}">Back to your subscription</a></p>'

    async def form(request: Request) -> dict[str, str] | None:
        """The url-encoded form, or None when the body is over MAX_BODY (never read further than that)."""
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            return None
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return None
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {name: values[0] for name, values in fields.items()}

    # -- database work, in the thread pool ------------------------------------------------------------

    def authorities() -> list[Authority]:
        return load_authorities(settings.recipients / "authorities.yaml")

    def erased(ledger: Ledger, email: str) -> bool:
        key = keyed_hash(email, secret)
        return ledger.db.execute("SELECT 1 FROM forgotten WHERE key = ?", (key,)).fetchone() is not None

    def current(ledger: Ledger, email: str) -> tuple[str | None, str]:
        """(authority slug or None, name): their sign-up's, else the first list naming them, else the last issue's."""
        row = ledger.db.execute("SELECT authority, name FROM signups WHERE email = ?", (email,)).fetchone()
        if row:
            return row[0], row[1]
        listed = listed_in(settings, email)
        if listed:
            return listed[0][0].slug, listed[0][1].name
        row = ledger.db.execute(
            "SELECT authority, name FROM deliveries WHERE email = ? ORDER BY issue DESC LIMIT 1", (email,)
        ).fetchone()
        return (row[0], row[1]) if row else (None, "")

    def state(email: str) -> tuple[bool, str | None, str | None, list[Authority]]:
        """(erased, why suppressed or None, current authority slug, every authority)."""
        with open_ledger() as ledger:
            if erased(ledger, email):
                return True, None, None, []
            reason = "unsubscribed (waiting)" if waiting(email) else ledger.suppression(email)
            slug, _ = current(ledger, email)
        return False, reason, slug, authorities()

    def set_authority(email: str, slug: str) -> Authority | None:
        """Write their sign-up row with this authority; None when there is no such authority (or they were erased)."""
        chosen = next((a for a in authorities() if a.slug == slug), None)
        if chosen is None:
            return None
        with open_ledger() as ledger:
            if erased(ledger, email):
                return None
            _, name = current(ledger, email)
            now = time.time()
            with ledger.transaction():
                ledger.db.execute(
                    "INSERT INTO signups (email, name, authority, consent, confirmed, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO UPDATE SET "
                    "authority = excluded.authority, updated = excluded.updated",
                    (email, name, chosen.slug, CONSENT, now, now),
                )
        return chosen

    def download(email: str) -> bytes:
        with open_ledger() as ledger:
            held = held_about(settings, ledger, email, secret)
        return json.dumps(held, indent=2, ensure_ascii=False).encode()

    # -- requests -------------------------------------------------------------------------------------

    async def show(request: Request) -> HTMLResponse:
        email = reader(request)
        if email is None:
            return invalid()
        token = request.path_params["token"]
        try:
            gone, reason, slug, known = await run_in_threadpool(state, email)
        except UNAVAILABLE:
            return busy()
        who = html.escape(email)
        if gone:
            return page(
                "Your details were erased",
                f"<p>{who} was erased from our records at your request, and is never sent the {title}.</p>",
            )
        action = html.escape(f"{base}/{token}")
        options = "".join(
            f'<option value="{html.escape(a.slug)}"{" selected" if a.slug == slug else ""}>'
            f"{html.escape(a.name)}</option>"
            for a in known
        )
        if slug is None:
            options = '<option value="" selected>Choose your organisation</option>' + options
        names = {a.slug: a.name for a in known}
        if reason is None:
            status = f"<p>{who} gets the {title}" + (
                f" as a member of staff at {html.escape(names[slug])}.</p>" if slug in names else ".</p>"
            )
            leave = (
                f"<h2>Unsubscribe</h2><p>Stop getting the {title}.</p>"
                f'<form method="post" action="{action}/unsubscribe"><button type="submit">Unsubscribe</button></form>'
            )
        else:
            status = f"<p>{who} does not get the {title}: it is unsubscribed.</p>"
            leave = ""
        privacy = settings.publication.privacy_url
        return page(
            "Manage your subscription",
            status
            + "<style>select{font:inherit;padding:6px;max-width:100%;margin:0 0 12px}label{display:block}</style>"
            + "<h2>Your organisation</h2>"
            + f'<form method="post" action="{action}/authority"><label for="authority">The organisation you work for'
            + f'</label><select id="authority" name="authority">{options}</select>'
            + '<div><button type="submit">Change organisation</button></div></form>'
            + leave
            + "<h2>Your data</h2><p>Download everything we hold about you, as a file (JSON).</p>"
            + f'<form method="post" action="{action}/download"><button type="submit">Download my data</button></form>'
            + (
                f'<p><a href="{html.escape(privacy)}">Our privacy notice</a> says how we use your details.</p>'
                if privacy
                else ""
            ),
        )

    async def change_authority(request: Request) -> HTMLResponse:
        fields = await form(request)
        if fields is None:
            return page("Too much data", "<p>This form only takes a choice from its list.</p>", status=413)
        email = reader(request)
        if email is None:
            return invalid()
        token = request.path_params["token"]
        try:
            chosen = await run_in_threadpool(set_authority, email, fields.get("authority", ""))
        except UNAVAILABLE:
            return busy()
        if chosen is None:
            return page(
                "Please choose your organisation",
                f"<p>Choose the organisation you work for from the list.</p>{back(token)}",
                status=400,
            )
        return page(
            "Your organisation is changed",
            f"<p>{html.escape(email)} will get the {title} as a member of staff at {html.escape(chosen.name)}, "
            f"from the next issue.</p>{back(token)}",
        )

    async def clicked(request: Request) -> str | HTMLResponse:
        """The reader a button's POST is for, or the page that refuses it (a body that is not a click, a bad link)."""
        if await form(request) is None:
            return page("Too much data", "<p>This address only takes a click of its button.</p>", status=413)
        return reader(request) or invalid()

    async def leave(request: Request) -> HTMLResponse:
        email = await clicked(request)
        if isinstance(email, HTMLResponse):
            return email
        try:
            now = await run_in_threadpool(unsubscribe, email, REASON)
        except UNAVAILABLE as exc:
            log.error("cannot record or spool an unsubscribe: %s", exc)
            return busy()
        return unsubscribed(settings, email, now)

    async def data(request: Request) -> Response:
        email = await clicked(request)
        if isinstance(email, HTMLResponse):
            return email
        try:
            body = await run_in_threadpool(download, email)
        except UNAVAILABLE:
            return busy()
        return Response(
            body,
            media_type="application/json",
            headers=HEADERS | {"Content-Disposition": f'attachment; filename="{DOWNLOAD_NAME}"'},
        )

    return [
        Route(f"{base}/{{token}}", show, methods=["GET"]),
        Route(f"{base}/{{token}}/authority", change_authority, methods=["POST"]),
        Route(f"{base}/{{token}}/unsubscribe", leave, methods=["POST"]),
        Route(f"{base}/{{token}}/download", data, methods=["POST"]),
    ]
