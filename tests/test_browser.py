"""The demo in a real browser: Debian's Chromium, driven by Playwright.

The demo is served as ``make demo`` serves it (``pserve`` on a copy of
``demo/development.ini``, the SQLite store, on a free loopback port). Two
browser contexts, each with its own cookie jar like two devices, log in as
the same user; the first lists both sessions and ends the second, whose next
page says it is logged out.

The browser is the system's (``/usr/bin/chromium``, or ``$CHROMIUM``); nothing
is downloaded (never ``playwright install``). Without it the test skips, or
fails when ``SESSIONSTORE_REQUIRE_SERVERS=1`` (``.ci/run`` installs it). On a
failure, a screenshot of each page, a Playwright trace and the server's log
are kept under ``test-artifacts/test_browser/``; the path is printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyramid_sessionstore_demo.pages import ENDED
from pyramid_sessionstore_demo.pages import THIS_DEVICE
from servers import free_port
from servers import unavailable

ROOT = Path(__file__).parent.parent
INI = ROOT / "demo" / "development.ini"
ARTIFACTS = ROOT / "test-artifacts" / "test_browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: The second device's user agent, so the first can tell its row from its own.
PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0.0.0 Mobile Safari/537.36 demo-test-phone"
)
#: Milliseconds any one browser action may take before the test fails.
ACTION_TIMEOUT_MS = 15_000


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """Return this test's artifacts folder, emptied of an earlier run's files."""
    folder = ARTIFACTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def demo_url(tmp_path: Path, artifacts: Path) -> Iterator[str]:
    """Serve the demo with pserve, as ``make demo`` does; yield its base URL."""
    port = free_port()
    ini = tmp_path / "development.ini"  # %(here)s: the SQLite file lands in tmp_path/var
    ini.write_text(INI.read_text().replace("127.0.0.1:6543", f"127.0.0.1:{port}"))
    pserve = Path(sys.executable).with_name("pserve")
    with open(artifacts / "server.log", "wb") as log:
        server = subprocess.Popen([str(pserve), str(ini)], stdout=log, stderr=log)
        try:
            _wait_for(port, server)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(10)


def _wait_for(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise AssertionError(f"pserve did not listen on 127.0.0.1:{port} (see server.log)")


@pytest.fixture
def browser() -> Iterator[Any]:
    """Launch the system's Chromium, headless, through Playwright."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            # Containers often have a small /dev/shm, which crashes renderers.
            args=["--disable-dev-shm-usage"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _log_in(page: Any, url: str, username: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=username]", username)
    page.click("#login button[type=submit]")
    page.wait_for_url(f"{url}/")
    assert f"logged in as {username}" in page.inner_text("nav .who")


@contextlib.contextmanager
def _kept_on_failure(artifacts: Path, pages: dict[str, Any]) -> Iterator[None]:
    """Save each page's screenshot and trace if the block fails, and say where."""
    for page in pages.values():
        page.context.tracing.start(screenshots=True, snapshots=True)
    try:
        yield
    except BaseException:
        for name, page in pages.items():
            with contextlib.suppress(Exception):  # a crashed page has nothing to save
                page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
            with contextlib.suppress(Exception):
                page.context.tracing.stop(path=str(artifacts / f"{name}-trace.zip"))
        print(f"\nbrowser test artifacts (screenshots, traces, server log): {artifacts}")
        raise


def test_ending_another_devices_session_logs_it_out(
    browser: Any, demo_url: str, artifacts: Path
) -> None:
    # Two contexts: two cookie jars, as two devices. The phone has a phone's
    # screen, so its listing shows the narrow layout.
    laptop = browser.new_context(viewport={"width": 1000, "height": 800})
    phone = browser.new_context(user_agent=PHONE, viewport={"width": 375, "height": 800})
    pages = {"laptop": laptop.new_page(), "phone": phone.new_page()}
    for page in pages.values():
        page.set_default_timeout(ACTION_TIMEOUT_MS)
    on_laptop, on_phone = pages["laptop"], pages["phone"]

    with _kept_on_failure(artifacts, pages):
        _log_in(on_laptop, demo_url, "alice")
        _log_in(on_phone, demo_url, "alice")

        # The phone sees both sessions, its own marked, and nothing wider
        # than its screen.
        on_phone.click("nav >> text=Active sessions")
        assert on_phone.inner_text("#session-count") == "2"
        assert THIS_DEVICE in on_phone.inner_text("tr.current")
        assert on_phone.evaluate("document.documentElement.scrollWidth") <= 375

        # The laptop sees both too: itself, and the phone by its user agent.
        on_laptop.click("nav >> text=Active sessions")
        assert on_laptop.inner_text("#session-count") == "2"
        assert THIS_DEVICE in on_laptop.inner_text("tr.current")
        phone_row = on_laptop.locator("tr.other")
        assert phone_row.count() == 1
        assert "demo-test-phone" in phone_row.inner_text()
        assert "Chrome on Android" in phone_row.inner_text()
        assert "127.0.0.1" in phone_row.inner_text()  # the ini records addresses

        # The laptop ends the phone's session.
        phone_row.get_by_role("button", name="End").click()
        on_laptop.wait_for_url(f"{demo_url}/sessions")
        assert "that browser is logged out" in on_laptop.inner_text("body")
        assert on_laptop.inner_text("#session-count") == "1"
        assert on_laptop.locator("tr.other").count() == 0

        # The phone's next page says its session ended, and it is logged out.
        on_phone.click("nav >> text=Home")
        assert on_phone.inner_text("#ended") == ENDED
        assert on_phone.inner_text("nav .who") == "not logged in"
        on_phone.reload()
        assert on_phone.locator("#ended").count() == 0  # told once

        # The laptop is still logged in.
        on_laptop.click("nav >> text=Home")
        assert on_laptop.inner_text("nav .who") == "logged in as alice"
        assert on_laptop.locator("#ended").count() == 0
