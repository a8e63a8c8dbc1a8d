"""Headless Chromium for the browser tests: Debian's chromium, driven by Playwright for Python.

Playwright's own browser builds are never downloaded: `executable_path` points at the system
chromium (run.sh installs it when missing). Playwright gives every launch a new, empty
user-data-dir, so no profile state leaks between runs.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from harness.processes import ROOT

ARTIFACTS = ROOT / "test-artifacts"
# axe-core, from node_modules/ (package-lock.json pins it; ./run.sh setup installs it).
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WCAG_A_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

# As root on a machine without network access: no sandbox (it needs an unprivileged user), no
# GPU, and nothing that phones home (QUIC probes, component updates, sync, background fetches).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def chromium_path() -> str:
    """CHROMIUM if set, else Debian's /usr/bin/chromium (or whatever `chromium` is on PATH)."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    found = shutil.which("chromium")
    if not found:
        raise RuntimeError("chromium is not installed (./run.sh test installs it with apt-get as root)")
    return found


@contextmanager
def launch_browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                             args=list(CHROMIUM_FLAGS))
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def open_page(browser: Browser, name: str, width: int = 1000, height: int = 900) -> Iterator[Page]:
    """A page in a fresh context (its own localStorage). On the way out its console output goes
    to test-artifacts/<name>.console.log and a screenshot of its last state to <name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    lines: list[str] = []
    page.on("console", lambda message: lines.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: lines.append(f"pageerror: {error}"))
    try:
        yield page
    finally:
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        except Exception as exc:  # a crashed page still gets its console log written
            lines.append(f"screenshot failed: {exc}")
        (ARTIFACTS / f"{name}.console.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
        context.close()


def axe_violations(page: Page, tags: list[str] = WCAG_A_AA) -> list[dict]:
    """axe-core's violations of the given rule tags on the page as it is now, each as
    {id, impact, help, nodes: [html, …]}. axe is evaluated through the DevTools protocol, which
    the page's Content-Security-Policy (script-src 'self') does not govern."""
    if not AXE_JS.exists():
        raise RuntimeError(f"{AXE_JS} is missing: run ./run.sh setup (npm ci installs axe-core)")
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE_JS.read_text(encoding="utf-8") + "\n;0")
    result = page.evaluate(
        """async (tags) => {
            const result = await axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
            return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                                 nodes: v.nodes.map(n => n.html)}));
        }""",
        tags,
    )
    return result


# Fixtures for the browser test files (registered by tests/conftest.py's pytest_plugins): one
# Chromium per module, a fresh page per test whose artifacts are named after the module's
# ARTIFACT_PREFIX and the test.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as b:
        yield b


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    prefix = getattr(request.module, "ARTIFACT_PREFIX", "browser")
    with open_page(browser, f"{prefix}-{request.node.name}") as p:
        yield p
