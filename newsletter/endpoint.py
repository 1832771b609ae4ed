"""The one-click unsubscribe endpoint (RFC 8058), for teams that can run a small web service.

`POST {path}/{token}` with `List-Unsubscribe=One-Click` (what mail clients send) or from the page's
button unsubscribes at once: no redirect, no cookies, harmless when repeated. `GET` shows a page with
the button, so a link scanner opening the URL unsubscribes nobody. A tampered or expired token gets a
plain page that says nothing about why. It writes the suppression list every send reads.
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from newsletter.config import Settings
from newsletter.ledger import Ledger
from newsletter.unsubscribe import MAX_AGE, BadToken, read_token

UNSUBSCRIBED = "unsubscribed"
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


def prefix(settings: Settings) -> str:
    """The path the links use: that of `unsubscribe_url`, or /unsubscribe."""
    url = settings.list.unsubscribe_url
    return (urlsplit(url).path.rstrip("/") if url else "") or "/unsubscribe"


def create_app(settings: Settings, secret: str, max_age: int = MAX_AGE) -> Starlette:
    base = prefix(settings)
    title = html.escape(settings.list.name)

    def page(heading: str, body: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(
            f'<!DOCTYPE html><html lang="en-GB"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{heading}</title>'
            '<style>body{font:18px/1.5 -apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1f2933;'
            'max-width:36em;margin:40px auto;padding:0 16px}button{font:inherit;padding:8px 18px;'
            'background:#183f6b;color:#fff;border:0;border-radius:4px}</style></head>'
            f"<body><main><h1>{heading}</h1>{body}</main></body></html>",
            status_code=status, headers=HEADERS)

    def recipient(request: Request) -> str | None:
        try:
            email, list_id = read_token(request.path_params["token"], secret, max_age)
        except BadToken:
            return None
        return email if list_id == settings.list.id else None

    def invalid() -> HTMLResponse:
        return page("This link does not work", "<p>Please use the link in your latest email, or reply to it and "
                    "we will take you off the list.</p>", status=400)

    def form(action: str, button: str) -> str:
        return f'<form method="post" action="{html.escape(action)}"><button type="submit">{button}</button></form>'

    async def show(request: Request) -> HTMLResponse:
        email = recipient(request)
        if email is None:
            return invalid()
        token = request.path_params["token"]
        with Ledger(settings.ledger) as ledger:
            reason = ledger.suppression(email)
        who = html.escape(email)
        if reason is None:
            return page(f"Unsubscribe from the {title}?",
                        f"<p>{who} will no longer get the {title}.</p>{form(f'{base}/{token}', 'Unsubscribe')}")
        return page("You are unsubscribed", f"<p>{who} no longer gets the {title}.</p>"
                    + (f"<p>Changed your mind?</p>{form(f'{base}/{token}/resubscribe', 'Subscribe again')}"
                       if reason.startswith(UNSUBSCRIBED) else ""))

    async def unsubscribe(request: Request) -> HTMLResponse:
        email = recipient(request)
        if email is None:
            return invalid()
        # RFC 8058 clients post `List-Unsubscribe=One-Click` (url-encoded or multipart); the page's button posts
        # nothing. Either way the POST is the request: the body only says which it was.
        one_click = b"List-Unsubscribe=One-Click" in await request.body()
        with Ledger(settings.ledger) as ledger:
            ledger.suppress(email, f"{UNSUBSCRIBED} ({'one-click' if one_click else 'web page'})", "web")
        return page("You are unsubscribed",
                    f"<p>{html.escape(email)} will not get the {title} again.</p>")

    async def resubscribe(request: Request) -> HTMLResponse:
        email = recipient(request)
        if email is None:
            return invalid()
        with Ledger(settings.ledger) as ledger:
            reason = ledger.suppression(email)
            if reason is not None and reason.startswith(UNSUBSCRIBED):  # never undo a bounce from here
                ledger.unsuppress(email)
        return page("You are subscribed again", f"<p>{html.escape(email)} will get the next {title}.</p>")

    return Starlette(routes=[
        Route(f"{base}/{{token}}", show, methods=["GET"]),
        Route(f"{base}/{{token}}", unsubscribe, methods=["POST"]),
        Route(f"{base}/{{token}}/resubscribe", resubscribe, methods=["POST"]),
    ])


def serve(settings: Settings, secret: str, host: str, port: int) -> None:
    import uvicorn

    Path(settings.ledger).parent.mkdir(parents=True, exist_ok=True)
    uvicorn.run(create_app(settings, secret), host=host, port=port, server_header=False, proxy_headers=True)
