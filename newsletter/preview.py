"""The editor's live preview: the issue at desktop and phone width, per authority, with its problems.

A small HTTP server on loopback only. It serves nothing from disk: every page is made from the draft
in memory, so no path can reach a file. It answers only requests addressed to it by a loopback name
(127.0.0.1, localhost, [::1] with its port): a web page whose own name was pointed at 127.0.0.1 (DNS
rebinding) could otherwise read the unpublished draft. Saving the draft reloads the page through
server-sent events (watchfiles notices the save); a draft with errors shows them instead, and recovers
when fixed. The email is rendered with the deployment's settings (names, brand, templates), as it will be sent.
"""

from __future__ import annotations

import ipaddress
import json
import mimetypes
import threading
import webbrowser
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jinja2
import watchfiles

from newsletter.checks import check
from newsletter.config import Settings
from newsletter.load import DraftError, Problem, load_draft
from newsletter.recipients import Authority
from newsletter.render import PERSONAL, Rendered, Web, render, shipped_templates

SAMPLE = {"email": "you@example.org", "unsubscribe_url": "#unsubscribe", "manage_url": "#manage"}
assert SAMPLE.keys() == PERSONAL.keys()
CALENDAR = "/calendar/"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
"""The only names the preview answers to (in the Host header), whichever of them it listens on."""


class State:
    """The draft as last read: either an issue with warnings, or the errors that stop it loading."""

    def __init__(self, path: Path, authorities: dict[str, Authority], settings: Settings | None = None) -> None:
        self.path = path
        self.authorities = authorities
        self.settings = settings or Settings()
        self.version = 0
        self.changed = threading.Condition()
        self.refresh()

    def refresh(self) -> None:
        try:
            draft = load_draft(self.path, self.authorities)
        except DraftError as exc:
            issue, errors, warnings = None, exc.problems, []
        else:
            issue, errors = draft.issue, []
            warnings = check(draft, render(issue, web=Web(files=CALENDAR), settings=self.settings).size)
        with self.changed:
            self.issue, self.errors, self.warnings = issue, errors, warnings
            self.variants: dict[str | None, Rendered] = {}
            self.version += 1
            self.changed.notify_all()

    def variant(self, slug: str | None) -> Rendered | None:
        if self.issue is None:
            return None
        if slug not in self.variants:
            self.variants[slug] = render(
                self.issue, self.authorities.get(slug or ""), web=Web(files=CALENDAR), settings=self.settings
            )
        return self.variants[slug]

    def wait(self, version: int, timeout: float) -> int:
        with self.changed:
            self.changed.wait_for(lambda: self.version != version, timeout=timeout)
            return self.version


def serve(
    path: Path,
    authorities: dict[str, Authority],
    port: int = 8025,
    host: str = "127.0.0.1",
    ready: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
    settings: Settings | None = None,
) -> None:
    """Serve the preview until `stop` is set (or forever); `ready` gets the URL once listening.

    `settings` (newsletter.toml) gives the names, brand and templates; None: the shipped defaults.
    """
    server = PreviewServer(host, port, State(path, authorities, settings))
    stop = stop or threading.Event()
    watcher = threading.Thread(target=_watch, args=(server.state, stop), daemon=True)
    watcher.start()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    if ready:
        ready(server.url)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()


def open_browser(url: str) -> None:
    webbrowser.open(url)


class PreviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, state: State) -> None:
        if not _loopback(host):
            raise ValueError(f"the preview only listens on this computer (127.0.0.1 or ::1), not on {host}")
        self.state = state
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}/"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _watch(state: State, stop: threading.Event) -> None:
    # Watch the folder, not the file: editors save by writing a new file and renaming it over the old.
    target = state.path.resolve()
    for changes in watchfiles.watch(
        target.parent,
        stop_event=stop,
        debounce=200,
        step=20,
        watch_filter=lambda _, changed: Path(changed).resolve() == target,
    ):
        if changes:
            state.refresh()


_pages = jinja2.Environment(loader=shipped_templates(), autoescape=True, undefined=jinja2.StrictUndefined)


class Handler(BaseHTTPRequestHandler):
    server: PreviewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the name http.server gives it
        return None  # the terminal is the editor's: keep it quiet

    def do_GET(self) -> None:
        if not self._addressed_to_us():
            return self._send(
                HTTPStatus.FORBIDDEN,
                "text/plain",
                b"this preview answers only at 127.0.0.1, localhost or [::1] with its port",
            )
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        slug = query.get("authority", [""])[0] or None
        state = self.server.state
        if slug is not None and slug not in state.authorities:
            return self._send(HTTPStatus.NOT_FOUND, "text/plain", b"no such authority")
        routes = {
            "/": lambda: self._page(),
            "/email.html": lambda: self._part(slug, "html"),
            "/email.txt": lambda: self._part(slug, "text"),
            "/problems.json": lambda: self._problems(),
            "/events": lambda: self._events(),
        }
        if url.path in routes:
            return routes[url.path]()
        if url.path.startswith(CALENDAR):
            return self._calendar(url.path.removeprefix(CALENDAR))
        self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")

    def _addressed_to_us(self) -> bool:
        """The Host header names this server by a loopback name and its port (bare, on port 80)."""
        port = self.server.server_address[1]
        names = {f"{name}:{port}" for name in LOOPBACK_NAMES} | (set(LOOPBACK_NAMES) if port == 80 else set())
        return (self.headers.get("Host") or "").strip().lower() in names

    def _page(self) -> None:
        state = self.server.state
        html = _pages.get_template("preview.html.j2").render(
            path=state.path, authorities=state.authorities.values(), brand=state.settings.brand.colour
        )
        self._send(HTTPStatus.OK, "text/html; charset=utf-8", html.encode())

    def _part(self, slug: str | None, kind: str) -> None:
        rendered = self.server.state.variant(slug)
        if rendered is None:
            body = _pages.get_template("preview-errors.html.j2").render(problems=self.server.state.errors)
            return self._send(HTTPStatus.OK, "text/html; charset=utf-8", body.encode())
        html, text = rendered.fill(**SAMPLE)
        if kind == "html":
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", html.encode())
        else:
            self._send(HTTPStatus.OK, "text/plain; charset=utf-8", text.encode())

    def _problems(self) -> None:
        state = self.server.state

        def listed(problems: list[Problem]) -> list[dict[str, object]]:
            return [{"line": p.line, "column": p.column, "message": p.message} for p in problems]

        body = {"version": state.version, "errors": listed(state.errors), "warnings": listed(state.warnings)}
        self._send(HTTPStatus.OK, "application/json", json.dumps(body).encode())

    def _calendar(self, name: str) -> None:
        from newsletter.calendar import entries

        state = self.server.state
        issue = state.issue
        found = next((e for e in entries(issue, state.settings) if e.filename == name), None) if issue else None
        if found is not None:
            return self._send(HTTPStatus.OK, "text/calendar; charset=utf-8", found.data)
        # The draft's own attachments, as the archive will publish them beside the page: only files the draft
        # names (no `..`, checked by the model), read from the draft's folder; nothing else from disk.
        attachment = next((a for a in issue.attachments if a.file and a.name == name), None) if issue else None
        if attachment is not None and attachment.file is not None:
            try:
                data = (state.path.parent / attachment.file).read_bytes()
            except OSError:
                return self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            return self._send(HTTPStatus.OK, kind, data)
        self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")

    def _events(self) -> None:
        """Server-sent events: one message per change of the draft, a comment now and then to keep alive."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        state = self.server.state
        version = state.version
        try:
            self.wfile.write(f"data: {version}\n\n".encode())
            self.wfile.flush()
            while True:
                now = state.wait(version, timeout=10)
                self.wfile.write(f"data: {now}\n\n".encode() if now != version else b": still here\n\n")
                self.wfile.flush()
                version = now
        except (BrokenPipeError, ConnectionResetError):
            return

    def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)
