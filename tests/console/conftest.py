"""Fixtures for the console's browser tests: callmask served by a real uvicorn on a
loopback port, and Debian's chromium driven by Playwright (``playwright install``
downloads are not used: the browser is /usr/bin/chromium). Screenshots go under the
test's tmp dir; with ``CALLMASK_SCREENSHOT_DIR`` set they are also copied there (that
is how the README's images in docs/ are made)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.async_api import Browser, Page, async_playwright

from callmask.console.assets import missing_vendor_files
from callmask.node import node_app
from callmask.store.database import Database
from tests.calls.conftest import node  # noqa: F401  (the SIPp + rtpengine node fixture)
from tests.conftest import Tenant, create_tenant, make_settings

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """The app (lifespan already running) on 127.0.0.1, a free port; yields its URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.skip("Debian chromium is not installed (scripts/install-system.sh)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


class Console:
    """One browser page on the console, collecting console errors (CSP violations
    show up there) so a test can insist there were none."""

    def __init__(self, page: Page, base_url: str, shots: Path) -> None:
        self.page = page
        self.base_url = base_url
        self.shots = shots
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base_url + path)

    async def login(self, key: str) -> None:
        await self.goto("/console/login")
        await self.page.fill("#api_key", key)
        await self.page.click("#login")

    async def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        _publish(path)
        return path


def _publish(path: Path) -> None:
    target = os.environ.get("CALLMASK_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


@pytest.fixture
async def console_app(tmp_path: Path, sqlite_url: str) -> AsyncIterator[tuple[FastAPI, Database]]:
    database = Database(sqlite_url)
    app = node_app(make_settings(tmp_path, sqlite_url), database=database)
    async with app.router.lifespan_context(app):
        yield app, database
    await database.close()


@pytest.fixture
async def served(console_app: tuple[FastAPI, Database]) -> AsyncIterator[str]:
    async with serving(console_app[0]) as url:
        yield url


@pytest.fixture
async def console(browser: Browser, served: str, tmp_path: Path) -> AsyncIterator[Console]:
    missing = missing_vendor_files()
    if missing:
        pytest.fail(f"console assets missing ({missing}): run scripts/install-frontend.sh")
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    yield Console(page, served, shots)
    await context.close()


@pytest.fixture
async def acme(console_app: tuple[FastAPI, Database]) -> Tenant:
    return await create_tenant(console_app[1], "acme")


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)
