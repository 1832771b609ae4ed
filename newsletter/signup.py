"""Sign-up on the web with confirmation by email (double opt-in), and the confirmed readers who join at send time.

Nothing is stored before the reader proves the mailbox is theirs. The confirmation link's token carries
everything (address, name, authority, the consent wording they saw), sealed like an unsubscribe token
(AES-SIV, key from the secret by HKDF) under a key of its own, so neither kind of token can stand for the
other. Opening the link shows a Confirm button (mail scanners open links); only its POST writes the
`signups` row. A confirmed sign-up is the reader's own statement: at send time it replaces any list row
for the same address (recipients.gather), and `newsletter report` lists each authority's joiners.

Abuse: every well-formed request gets the same page, byte for byte, whether the address is new, on a
list, signed up or suppressed, and the email goes out after the answer, from one queue (no timing to
tell); at most one confirmation email per address per day, remembered only as a keyed hash
(`signup_requests`, kept a day); a per-client limit in memory; a honeypot field; bodies limited (413).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import html
import json
import logging
import sqlite3
import struct
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.config import Settings
from newsletter.errors import BadToken, ListError, NewsletterError
from newsletter.ledger import Ledger
from newsletter.privacy import keyed_hash
from newsletter.recipients import LONGEST_NAME, Authority, Recipient, load_authorities, valid_address
from newsletter.sealed import seal, unseal

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from newsletter.endpoint import Spool
    from newsletter.message import Outgoing

__all__ = [
    "Joiner",
    "RateLimit",
    "SignUp",
    "Signup",
    "confirmation_message",
    "confirmed_readers",
    "joiners_since",
    "make_confirmation_token",
    "read_confirmation_token",
    "signup_prefix",
]

log = logging.getLogger("uvicorn.error")

INFO = b"newsletter signup confirmation v1"
"""HKDF's info for the confirmation tokens' key (newsletter.sealed)."""
VERSION = b"\x01"
"""The first byte of every confirmation token, authenticated too."""
_PURPOSE = b"signup confirmation"
"""Authenticated with the version: a confirmation token, whatever key a future change gives it."""
_MADE = struct.Struct(">I")
DAY = 24 * 3600
HONEYPOT = "website"
"""A field people never see or fill (hidden from view and from screen readers); bots fill every field."""
_UNAVAILABLE = (sqlite3.Error, NewsletterError, OSError)
"""What a ledger that is locked or damaged raises: not possible now (as endpoint.UNAVAILABLE)."""
QUEUE_LIMIT = 1000
"""Confirmation emails waiting at most; past that a request is answered the same and its email dropped."""


@dataclasses.dataclass(frozen=True)
class Signup:
    """What a confirmation link carries: who asked, for which authority, having seen which consent wording."""

    email: str
    name: str
    authority: str
    consent: str


def make_confirmation_token(signup: Signup, secret: str, now: float | None = None) -> str:
    """The sealed, dated token of a confirmation link (a few hundred characters: it holds the consent wording).
    Its key is not the unsubscribe tokens' (another HKDF info): an unsubscribe token never confirms, nor this
    one unsubscribes."""
    made = int(time.time() if now is None else now)
    payload = json.dumps([signup.email, signup.name, signup.authority, signup.consent], ensure_ascii=False)
    return seal(_MADE.pack(made) + payload.encode(), secret, INFO, [VERSION, _PURPOSE])


def read_confirmation_token(token: str, secret: str, max_age: float) -> Signup:
    """The sign-up a token holds; BadToken when it was forged, damaged, is another kind of token or too old."""
    plain = unseal(token, secret, INFO, [VERSION, _PURPOSE])
    try:
        (made,) = _MADE.unpack_from(plain)
        email, name, authority, consent = json.loads(plain[_MADE.size :].decode())
        signup = Signup(str(email), str(name), str(authority), str(consent))
    except (ValueError, TypeError, struct.error):
        raise BadToken("invalid") from None
    if time.time() - made > max_age:
        raise BadToken("expired")
    return signup


def signup_prefix(settings: Settings) -> str | None:
    """The path the sign-up pages are served at (`/subscribe`), or None when there is no public address for them."""
    link = settings.signup.link(settings.list.unsubscribe_url)
    return (urllib.parse.urlsplit(link).path.rstrip("/") or "/subscribe") if link else None


# -- the confirmation email --------------------------------------------------------------------------------


def confirmation_message(settings: Settings, signup: Signup, link: str, authority: str) -> Outgoing:
    """The plain-text email with the confirmation link, its headers written by message.py's header-safe helpers
    (a name can never add a header), DKIM-signed when a key is configured."""
    import email.utils

    from newsletter.message import Outgoing, _ascii_address, _header, _mailbox, _qp, _unstructured

    listing = settings.list
    sender = _ascii_address(settings.publication.sender.email, "`[publication] sender`", NewsletterError)
    hours = settings.signup.expiry_hours
    text = (
        f"Hello {signup.name},\n\n"
        f"Someone, we hope you, asked for this address to get the {listing.name} each month, as a reader at "
        f"{authority}. To confirm, open this link within {hours} hours and press Confirm:\n\n"
        f"{link}\n\n"
        "If it was not you, ignore this email: nothing has been kept, and you will not hear from us again.\n\n"
        f"-- \n{listing.name}\n"
    )
    message_id = email.utils.make_msgid("signup", domain=listing.domain)
    head = b"".join(
        [
            _mailbox("From", listing.name, sender),
            _mailbox("To", signup.name, _ascii_address(signup.email)),
            _header("Subject", _unstructured(f"Confirm your subscription to the {listing.name}")),
            f"Date: {email.utils.formatdate(localtime=True)}\r\nMessage-ID: {message_id}\r\n".encode(),
            b"Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n",
            b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n',
        ]
    )
    data = head + b"\r\n" + _qp(text)
    if settings.dkim.key_file and settings.dkim.selector:
        from newsletter.signing import Signer

        signer = Signer(
            settings.dkim.key_file.read_bytes(),
            settings.dkim.selector,
            listing.domain,
            include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        )
        data = signer.sign(data) + data
    bounce_to = _ascii_address(listing.bounce_to, "`[list] bounce_to`", NewsletterError)
    return Outgoing(sender=bounce_to, recipient=signup.email, data=data, message_id=message_id, crlf=True)


# -- who has signed up -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Joiner:
    email: str
    name: str
    authority: str
    confirmed: float


def confirmed_readers(ledger: Ledger) -> list[Recipient]:
    """Every confirmed sign-up, as readers for recipients.gather (which honours suppressions and replaces list rows)."""
    rows = ledger.db.execute("SELECT email, name, authority FROM signups ORDER BY email")
    return [Recipient(email, name, authority) for email, name, authority in rows]


def joiners_since(ledger: Ledger, since: float) -> list[Joiner]:
    """Sign-ups confirmed (or moved to another authority) from a time on, for the list owners' records."""
    rows = ledger.db.execute(
        "SELECT email, name, authority, confirmed FROM signups WHERE confirmed >= ? ORDER BY authority, email", (since,)
    )
    return [Joiner(*row) for row in rows]


# -- the web pages ---------------------------------------------------------------------------------------


class RateLimit:
    """At most `limit` requests per client in any `window` seconds, in memory (a restart forgets: fine for a limit)."""

    def __init__(self, limit: int, window: float = 3600, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.seen: dict[str, collections.deque[float]] = {}

    def allow(self, client: str) -> bool:
        now = self.clock()
        if len(self.seen) > 10_000:  # forget the clients that have gone quiet, so memory stays small
            self.seen = {c: t for c, t in self.seen.items() if t and t[-1] > now - self.window}
        times = self.seen.setdefault(client, collections.deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True

    def retry_after(self, client: str) -> int:
        times = self.seen.get(client)
        return max(1, round(times[0] + self.window - self.clock())) if times else 1


@dataclasses.dataclass
class _Form:
    email: str = ""
    name: str = ""
    authority: str = ""
    consent: bool = False
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    note: str = ""


STYLE = (
    "<style>label{font-weight:600}input[type=email],input[type=text],select{font:inherit;width:100%;"
    "box-sizing:border-box;padding:6px 8px;border:1px solid #52606d;border-radius:4px}"
    "input[type=checkbox]{width:1.3em;height:1.3em;margin:0 8px 0 0;vertical-align:top}"
    ".choice{display:flex;align-items:flex-start}.choice label{font-weight:400}"
    ".error{color:#b00020;font-weight:600;margin:4px 0}.problem{border:3px solid #b00020;padding:0 16px}"
    ".hp{position:absolute;left:-10000px;top:auto;width:1px;height:1px;overflow:hidden}</style>"
)


class SignUp:
    """The sign-up pages of `newsletter serve`: `routes()` goes into endpoint.create_app's app.

    It shares the endpoint's page shell, body limit, short-timeout ledger, busy page and spool (a confirm
    records waiting unsubscribes first, so an old one never undoes it).
    """

    def __init__(
        self,
        settings: Settings,
        secret: str,
        *,
        ledger: Callable[[], Ledger],
        page: Callable[..., HTMLResponse],
        busy: Callable[[], HTMLResponse],
        small_body: Callable[[Request], Awaitable[bytes | None]],
        spool: Spool | None = None,
    ) -> None:
        self.settings = settings
        self.secret = secret
        self.ledger = ledger
        self.page = page
        self.busy = busy
        self.small_body = small_body
        self.spool = spool
        self.public = settings.signup.link(settings.list.unsubscribe_url)
        self.base = signup_prefix(settings) or "/subscribe"
        self.max_age = settings.signup.expiry_hours * 3600
        self.limit = RateLimit(settings.signup.per_client_per_hour)
        self.title = html.escape(settings.list.name)
        self.waiting: collections.deque[Signup] = collections.deque()
        self.worker: asyncio.Task[None] | None = None
        self._authorities: tuple[tuple[int, int], list[Authority]] | None = None

    def routes(self) -> list[Route]:
        """GET and POST of the form and of the confirm page; none without a public address for the links."""
        from starlette.routing import Route

        if self.public is None:
            return []
        return [
            Route(self.base, self.form, methods=["GET"]),
            Route(self.base, self.submit, methods=["POST"]),
            Route(f"{self.base}/confirm/{{token}}", self.show_confirm, methods=["GET"]),
            Route(f"{self.base}/confirm/{{token}}", self.confirm, methods=["POST"]),
        ]

    # -- authorities (re-read when the file changes) -------------------------------------------------------

    def authorities(self) -> list[Authority]:
        path = Path(self.settings.recipients) / "authorities.yaml"
        info = path.stat()
        stamp = (info.st_mtime_ns, info.st_size)
        if self._authorities is None or self._authorities[0] != stamp:
            self._authorities = (stamp, load_authorities(path))
        return self._authorities[1]

    async def known(self) -> list[Authority] | None:
        """The authorities, or None (logged) when authorities.yaml cannot be read: the page says try later."""
        try:
            return await asyncio.to_thread(self.authorities)
        except (ListError, OSError) as exc:
            log.error("the sign-up form cannot list the authorities: %s", exc)
            return None

    # -- pages -----------------------------------------------------------------------------------------

    def unavailable(self) -> HTMLResponse:
        return self.page(
            "Please try again later",
            "<p>Signing up is not possible just now. Nothing has been kept.</p>",
            status=503,
            headers={"Retry-After": "300"},
        )

    def invalid(self) -> HTMLResponse:
        again = html.escape(self.public or self.base)
        return self.page(
            "This link does not work",
            f"<p>Confirmation links work for {self.settings.signup.expiry_hours} hours. Nothing has been kept: "
            f'please <a href="{again}">sign up again</a>.</p>',
            status=400,
        )

    def form_page(self, authorities: list[Authority], form: _Form, status: int = 200) -> HTMLResponse:
        esc = html.escape
        errors = form.errors
        parts = [
            STYLE,
            f"<p>Get the {self.title} by email each month. We will email you a link to confirm your "
            "address: nothing is kept until you use it.</p>",
        ]
        if errors:
            items = "".join(f'<li><a href="#{f}">{esc(m)}</a></li>' for f, m in errors.items())
            parts.append(f'<div class="problem" role="alert"><h2>Please check the form</h2><ul>{items}</ul></div>')
        if form.note:
            parts.append(f'<p role="status">{esc(form.note)}</p>')

        def described(field: str) -> str:
            if field not in errors:
                return ""
            return f' aria-invalid="true" aria-describedby="{field}-error"'

        def error(field: str) -> str:
            return f'<p class="error" id="{field}-error">{esc(errors[field])}</p>' if field in errors else ""

        options = ['<option value="">Choose your organisation</option>'] + [
            f'<option value="{esc(a.slug)}"{" selected" if a.slug == form.authority else ""}>{esc(a.name)}</option>'
            for a in authorities
        ]
        privacy = self.settings.publication.privacy_url
        parts.append(
            f'<form method="post" action="{esc(self.base)}">'
            f'<p><label for="email">Email address</label>{error("email")}'
            f'<input type="email" id="email" name="email" autocomplete="email" required maxlength="254" '
            f'value="{esc(form.email)}"{described("email")}></p>'
            f'<p><label for="name">Your name</label>{error("name")}'
            f'<input type="text" id="name" name="name" autocomplete="name" required maxlength="{LONGEST_NAME}" '
            f'value="{esc(form.name)}"{described("name")}></p>'
            f'<p><label for="authority">Your organisation</label>{error("authority")}'
            f'<select id="authority" name="authority" required{described("authority")}>{"".join(options)}</select></p>'
            f'<div class="hp" aria-hidden="true"><label for="{HONEYPOT}">Leave this empty</label>'
            f'<input type="text" id="{HONEYPOT}" name="{HONEYPOT}" tabindex="-1" autocomplete="off"></div>'
            f"{error('consent')}"
            f'<p class="choice"><input type="checkbox" id="consent" name="consent" value="yes" required'
            f"{' checked' if form.consent else ''}{described('consent')}>"
            f'<label for="consent">{esc(self.settings.signup.consent)}</label></p>'
            + (
                f'<p><a href="{esc(privacy)}">How we use your information: our privacy notice</a></p>'
                if privacy
                else ""
            )
            + '<p><button type="submit">Sign up</button></p></form>'
        )
        return self.page(f"Sign up for the {self.settings.list.name}", "".join(parts), status=status)

    def sent_page(self) -> HTMLResponse:
        """The one answer to every well-formed sign-up: the same bytes whoever the address is."""
        hours = self.settings.signup.expiry_hours
        return self.page(
            "Check your email",
            f"<p>If that address can receive the {self.title}, we have sent it a link to confirm the sign-up. "
            f"The link works for {hours} hours. Nothing is kept until you use it.</p>"
            "<p>No email? Check your junk folder. We send at most one a day to each address, so if you asked "
            "earlier today, please use that email or try again tomorrow.</p>",
        )

    # -- handlers --------------------------------------------------------------------------------------

    async def form(self, request: Request) -> HTMLResponse:
        authorities = await self.known()
        if authorities is None:
            return self.unavailable()
        given = request.query_params.get("email", "")[:254]
        form = _Form(email=given)
        with contextlib.suppress(ListError):
            form.authority = _proposed(authorities, valid_address(given)) if given else ""
        return self.form_page(authorities, form)

    async def submit(self, request: Request) -> HTMLResponse:
        client = request.client.host if request.client else "unknown"
        if not self.limit.allow(client):
            return self.page(
                "Too many requests",
                "<p>This connection has asked for a lot of sign-ups. Please try again later.</p>",
                status=429,
                headers={"Retry-After": str(self.limit.retry_after(client))},
            )
        body = await self.small_body(request)
        if body is None:
            return self.page("Too much data", "<p>The sign-up form is much smaller than this.</p>", status=413)
        authorities = await self.known()
        if authorities is None:
            return self.unavailable()
        fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)

        def value(name: str) -> str:
            return (fields.get(name) or [""])[0]

        if value(HONEYPOT).strip():
            return self.sent_page()  # a bot: the same answer, nothing sent
        form, signup = _validate(value, authorities, self.settings.signup.consent)
        if signup is None:
            return self.form_page(authorities, form, status=400)
        try:
            send = await asyncio.to_thread(self._may_send, signup.email)
        except _UNAVAILABLE:
            return self.busy()
        if send:
            self._queue(signup)
        return self.sent_page()

    async def show_confirm(self, request: Request) -> HTMLResponse:
        signup = self._read(request)
        if signup is None:
            return self.invalid()
        authorities = await self.known()
        names = {a.slug: a.name for a in authorities or []}
        action = html.escape(f"{self.base}/confirm/{request.path_params['token']}")
        return self.page(
            "Confirm your subscription",
            f"<p>{html.escape(signup.email)} will get the {self.title} each month, as a reader at "
            f"{html.escape(names.get(signup.authority, signup.authority))}.</p>"
            f'<form method="post" action="{action}"><button type="submit">Confirm</button></form>',
        )

    async def confirm(self, request: Request) -> HTMLResponse:
        if await self.small_body(request) is None:
            return self.page("Too much data", "<p>This address only takes a click of its button.</p>", status=413)
        signup = self._read(request)
        if signup is None:
            return self.invalid()
        try:
            await asyncio.to_thread(self._record, signup)
        except _UNAVAILABLE:
            return self.busy()
        return self.page(
            "You are subscribed",
            f"<p>Thank you. {html.escape(signup.email)} will get the next {self.title}. Every issue has a link "
            "to unsubscribe.</p>",
        )

    def _read(self, request: Request) -> Signup | None:
        try:
            return read_confirmation_token(request.path_params["token"], self.secret, self.max_age)
        except BadToken:
            return None

    # -- the ledger, in the thread pool ------------------------------------------------------------------

    def _may_send(self, email: str) -> bool:
        """Whether to send a confirmation now: not to a bounced or otherwise suppressed address (an unsubscribed
        one may sign up again), and at most once a day per address; only the address's keyed hash is kept."""
        key = keyed_hash(email, self.secret)
        now = time.time()
        with self.ledger() as opened, opened.transaction():
            reason = opened.suppression(email)
            if reason is not None and not reason.startswith("unsubscribed"):
                return False
            opened.db.execute("DELETE FROM signup_requests WHERE sent < ?", (now - DAY,))
            inserted = opened.db.execute("INSERT OR IGNORE INTO signup_requests VALUES (?, ?)", (key, now))
            return inserted.rowcount == 1

    def _forget_request(self, email: str) -> None:
        """The email did not go: let the address ask again today."""
        with self.ledger() as opened, opened.transaction():
            opened.db.execute("DELETE FROM signup_requests WHERE address_hash = ?", (keyed_hash(email, self.secret),))

    def _record(self, signup: Signup) -> None:
        """Write (or update) the sign-up and lift an unsubscribe, never a bounce. Harmless when repeated; a
        change of authority dates it anew, so the new authority's report lists the reader as joining."""
        with self._spool_held(), self.ledger() as opened:
            if self.spool is not None:
                self.spool.drain(opened)
            with opened.transaction():
                now = time.time()
                opened.db.execute(
                    "INSERT INTO signups (email, name, authority, consent, confirmed, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO UPDATE SET name = excluded.name, "
                    "consent = excluded.consent, updated = excluded.updated, authority = excluded.authority, "
                    "confirmed = CASE WHEN signups.authority = excluded.authority THEN signups.confirmed "
                    "ELSE excluded.confirmed END",
                    (signup.email, signup.name, signup.authority, signup.consent, now, now),
                )
                opened.db.execute(
                    "DELETE FROM suppressions WHERE email = ? AND reason LIKE 'unsubscribed%'", (signup.email,)
                )
                # Confirming is fresh consent, proved by the mailbox: it lifts an erasure's block too (`forget`).
                opened.db.execute("DELETE FROM forgotten WHERE key = ?", (keyed_hash(signup.email, self.secret),))

    def _spool_held(self) -> contextlib.AbstractContextManager[object]:
        return self.spool.lock if self.spool is not None else contextlib.nullcontext()

    # -- the confirmation emails, one at a time, after the answer -------------------------------------------

    def _queue(self, signup: Signup) -> None:
        if len(self.waiting) >= QUEUE_LIMIT:
            log.warning("sign-up confirmations are %d behind: one was dropped", len(self.waiting))
            return
        self.waiting.append(signup)
        if self.worker is None or self.worker.done():
            self.worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        """Send what is waiting, in the order asked, then end (the next request starts another)."""
        while self.waiting:
            await self._deliver(self.waiting.popleft())

    async def _deliver(self, signup: Signup) -> None:
        from newsletter.transport import opener

        try:
            names = {a.slug: a.name for a in await asyncio.to_thread(self.authorities)}
            token = make_confirmation_token(signup, self.secret)
            link = f"{self.public}/confirm/{token}"
            message = confirmation_message(self.settings, signup, link, names.get(signup.authority, signup.authority))
            open_transport = opener(self.settings.transport.url, self.settings.transport, self.settings.password)
            async with open_transport() as transport:
                result = await transport.deliver(message)
            problem = None if result.status == "sent" else result.reply
        except Exception as exc:  # noqa: BLE001 - a broken relay or setting: logged, the service goes on
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            return
        log.warning("a sign-up confirmation could not be sent (%s): that address may ask again", problem)
        try:
            await asyncio.to_thread(self._forget_request, signup.email)
        except _UNAVAILABLE as exc:
            log.warning("could not clear the once-a-day mark (%s): that address may ask again tomorrow", exc)


def _proposed(authorities: list[Authority], email: str) -> str:
    """The one authority whose `domains` include the address's domain, or "" (none, or several)."""
    owners = [a.slug for a in authorities if a.owns(email)]
    return owners[0] if len(owners) == 1 else ""


def _clean(value: str) -> str:
    return " ".join("".join(" " if ord(c) < 32 or 0x7F <= ord(c) <= 0x9F else c for c in value).split())


def _validate(value: Callable[[str], str], authorities: list[Authority], consent: str) -> tuple[_Form, Signup | None]:
    """The form as posted, with a message per field that needs fixing; the sign-up when nothing does."""
    form = _Form(
        email=value("email").strip()[:254],
        name=_clean(value("name")),
        authority=value("authority"),
        consent=value("consent") == "yes",
    )
    email = ""
    try:
        email = valid_address(form.email)
    except ListError as exc:
        form.errors["email"] = str(exc) if form.email else "Enter your email address, like name@organisation.gov.uk"
    if not form.name:
        form.errors["name"] = "Enter your name"
    elif len(form.name) > LONGEST_NAME:
        form.errors["name"] = f"Your name must be at most {LONGEST_NAME} characters"
    slugs = {a.slug: a for a in authorities}
    if form.authority not in slugs:
        proposed = _proposed(authorities, email) if email else ""
        if proposed:
            form.authority = proposed
            form.errors["authority"] = (
                f"Check your organisation: we have chosen {slugs[proposed].name} from your email address"
            )
        else:
            form.authority = ""
            form.errors["authority"] = "Choose your organisation"
    if not form.consent:
        form.errors["consent"] = "Tick the box to say you agree, or you cannot be sent the newsletter"
    if form.errors:
        return form, None
    return form, Signup(email, form.name, form.authority, consent)
