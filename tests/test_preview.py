"""The live preview in a real headless Chromium: widths, authorities, text part, reload on save, errors."""

from __future__ import annotations

import http.client
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import DRAFTS
from newsletter.preview import PreviewServer, State, serve

SEPTEMBER = DRAFTS[-1]


@pytest.fixture
def preview(tmp_path: Path, authorities: dict) -> Iterator[tuple[str, Path]]:
    draft = tmp_path / SEPTEMBER.name
    shutil.copy(SEPTEMBER, draft)
    stop = threading.Event()
    urls: list[str] = []
    ready = threading.Event()
    thread = threading.Thread(
        target=serve,
        args=(draft, authorities),
        daemon=True,
        kwargs={"port": 0, "ready": lambda url: (urls.append(url), ready.set()), "stop": stop},
    )
    thread.start()
    assert ready.wait(30)
    yield urls[0], draft
    stop.set()
    thread.join(10)


def test_page_loads_with_the_email_and_no_problems_panel_errors(browser: object, preview: tuple) -> None:
    url, _ = preview
    page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    page.goto(url)
    assert page.title() == "Preview: 2025-09.yaml"
    assert page.locator("#authority option").count() == 17
    frame = page.frame_locator("#frame")
    frame.locator("text=September always feels like a fresh start.").wait_for()
    page.wait_for_function("document.querySelector('#problems').textContent.length > 0")
    assert "error:" not in page.locator("#problems").inner_text()
    page.close()


def test_phone_width_has_no_horizontal_scroll(browser: object, preview: tuple) -> None:
    url, _ = preview
    page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    page.goto(url)
    page.click("#phone")
    page.wait_for_function("document.querySelector('#frame').width == '375'")
    page.frame_locator("#frame").locator("text=September always feels like a fresh start.").wait_for()
    assert page.locator("#frame").bounding_box()["width"] <= 377  # 375 + the border
    frame = page.frame(url=lambda u: "email.html" in u)
    assert frame.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    assert frame.evaluate("window.innerWidth") <= 375
    page.close()


def test_authority_switch_and_text_tab(browser: object, preview: tuple) -> None:
    url, _ = preview
    page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    page.goto(url)
    page.select_option("#authority", "telford-and-wrekin")
    page.frame_locator("#frame").locator("text=you work for Telford & Wrekin Council").wait_for()
    page.click("#show-text")
    page.wait_for_function("document.querySelector('#text').textContent.includes('REGIONAL UPDATE')")
    text = page.locator("#text").inner_text()
    assert "Telford & Wrekin" in text and "PWLE Seminar" in text
    assert page.locator("#frame").is_hidden()
    page.close()


def test_saving_the_draft_updates_the_page_and_errors_recover(browser: object, preview: tuple) -> None:
    url, draft = preview
    page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    page.goto(url)
    frame = page.frame_locator("#frame")
    frame.locator("h2", has_text="Regional SEND Co-ordinator").wait_for()
    page.evaluate("window.notReloaded = true")
    original = draft.read_text(encoding="utf-8")

    draft.write_text(
        original.replace("heading: Regional SEND Co-ordinator", "heading: Our new SEND lead"), encoding="utf-8"
    )
    frame.locator("h2", has_text="Our new SEND lead").wait_for(timeout=10_000)

    draft.write_text(original.replace("status: approved", "status: finished"), encoding="utf-8")
    frame.locator("text=The draft has errors").wait_for(timeout=10_000)
    frame.locator("text=`status` cannot be `finished`").wait_for()
    page.wait_for_function("document.querySelector('#problems').textContent.includes('cannot be')")

    draft.write_text(original, encoding="utf-8")
    frame.locator("text=September always feels like a fresh start.").wait_for(timeout=10_000)
    assert page.evaluate("window.notReloaded") is True  # updated in place, never a manual reload
    page.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.org"])
def test_refuses_to_listen_beyond_this_computer(host: str, authorities: dict) -> None:
    with pytest.raises(ValueError, match="only listens on this computer"):
        PreviewServer(host, 0, State(SEPTEMBER, authorities))


@pytest.mark.parametrize(
    "path",
    [
        "/../../../../etc/passwd",
        "/calendar/../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/calendar/..%2f..%2f..%2fetc%2fpasswd",
        "/drafts/2025-09.yaml",
        "/newsletter/cli.py",
        "//etc/passwd",
    ],
)
def test_no_file_can_be_read_through_the_server(preview: tuple, path: str) -> None:
    url, _ = preview
    port = int(url.rsplit(":", 1)[1].strip("/"))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == 404
    assert b"root:" not in body and b"import" not in body


def get(url: str, path: str, host: str | None) -> tuple[int, bytes]:
    """A real request to the preview with the Host header a browser (or a rebinding page) would send."""
    port = int(url.rsplit(":", 1)[1].strip("/"))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("GET", path, skip_host=host is not None)
    if host is not None:
        connection.putheader("Host", host)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


@pytest.mark.parametrize(
    "host",
    [
        "evil.example.com",
        "evil.example.com:{port}",
        "127.0.0.1.evil.example.com:{port}",
        "localhost.evil.example.com:{port}",
        "127.0.0.1:1",
        "192.168.1.10:{port}",
        "",
    ],
)
@pytest.mark.parametrize("path", ["/problems.json", "/email.html", "/email.txt", "/", "/events"])
def test_a_foreign_host_header_gets_nothing(preview: tuple, host: str, path: str) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: it must not read the draft."""
    url, _ = preview
    port = url.rsplit(":", 1)[1].strip("/")
    status, body = get(url, path, host.format(port=port))
    assert status in (403, 421)
    assert b"September" not in body and b"errors" not in body and b"data:" not in body


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "LOCALHOST:{port}"])
def test_the_loopback_names_are_served(preview: tuple, host: str) -> None:
    url, _ = preview
    port = url.rsplit(":", 1)[1].strip("/")
    status, body = get(url, "/problems.json", host.format(port=port))
    assert status == 200 and b'"errors": []' in body


def test_a_port_out_of_range_is_one_clear_line() -> None:
    import subprocess
    import sys

    from conftest import ROOT

    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "preview", str(SEPTEMBER), "--port", "99999", "--no-browser"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "65535" in result.stderr
