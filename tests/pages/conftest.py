"""A real server (uvicorn on a free loopback port) over the session's trained champions,
and a real browser: the system's headless Chromium driven by playwright, with every
request that leaves the loopback blocked and recorded."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import uvicorn

from serving.app import create_app
from serving.settings import Settings
from serving.store import ModelStore

KEY = "cockpit-test-key-0123456789"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def page_store(trained) -> ModelStore:
    loaded = ModelStore()
    report = loaded.reload()
    assert all(r["loaded"] for r in report.values()), report
    return loaded


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread


def start_server(settings: Settings, store: ModelStore) -> LiveServer:
    port = _free_port()
    config = uvicorn.Config(create_app(settings, store), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    return LiveServer(f"http://127.0.0.1:{port}", server, thread)


def stop_server(live: LiveServer) -> None:
    live.server.should_exit = True
    live.thread.join(timeout=10)


def page_settings(**overrides) -> Settings:
    values = {"api_key": KEY, "environment": "production", "load_models_on_startup": False,
              "forecast_simulations": 300, "watch_champions_seconds": 0}
    return Settings(**{**values, **overrides})


@pytest.fixture(scope="session")
def live(page_store: ModelStore) -> Iterator[LiveServer]:
    served = start_server(page_settings(), page_store)
    yield served
    stop_server(served)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Per module, not per session: while playwright's sync API is open, its event loop
    is the main thread's running loop, and a later test's ``asyncio.run`` would fail."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@dataclass
class Watched:
    """A browser tab and what it did wrong: console errors, uncaught script errors, and
    requests that tried to leave the machine (all blocked)."""

    page: object
    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.outside == [], f"requests off the loopback: {self.outside}"


@pytest.fixture()
def tab(browser, live: LiveServer) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watched = Watched(page)

    def route(r) -> None:
        host = urlsplit(r.request.url).hostname
        if r.request.url.startswith(("data:", "about:", "blob:")) or host in ("127.0.0.1",
                                                                            "localhost"):
            r.continue_()
        else:
            watched.outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page.on("console", lambda msg: watched.errors.append(msg.text)
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: watched.errors.append(str(exc)))
    page.set_default_timeout(30_000)
    yield watched
    context.close()


def log_in(tab: Watched, live: LiveServer, path: str = "/") -> None:
    page = tab.page
    page.goto(f"{live.url}{path}")
    assert "/login" in page.url
    page.fill("input[name=key]", KEY)
    page.click("form.login button[type=submit]")
    page.wait_for_load_state("load")
