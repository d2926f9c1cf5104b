"""The dashboard in a real browser: Playwright driving Debian's chromium (installed by
scripts/bootstrap.sh; never downloaded). Also takes the screenshots in docs/."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from tests import PROJECT_ROOT
from tests.dashboard.conftest import RoleFactory, Served
from tests.dashboard.test_pages import XSS, run_diamond
from tests.engine.helpers import (
    complete,
    ensure_worker,
    fail,
    read_and_start,
    run_row,
    start_flow,
)

CHROMIUM = "/usr/bin/chromium"
DOCS = PROJECT_ROOT / "docs"
TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless chromium for the module."""
    assert shutil.which(CHROMIUM), (
        f"{CHROMIUM} is missing: run scripts/bootstrap.sh (apt-get install chromium)"
    )
    args = ["--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]  # fmt: skip
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args, timeout=30_000)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page (own cookies) with a fixed viewport and short timeouts."""
    context = browser.new_context(viewport={"width": 1280, "height": 820})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def expect_fill(page: Page, step: str, colour: str) -> None:
    """The computed fill colour of a step's box in the DAG becomes ``colour``."""
    expect(page.locator(f'svg.dag a[data-step="{step}"] rect')).to_have_css("fill", colour)


def test_runs_list_and_filters(
    conn: psycopg.Connection, served: Served, diamond: str, page: Page
) -> None:
    conn.execute("select pgflow.create_flow('other')")
    conn.execute("select pgflow.add_step('other', 'only')")
    done = run_diamond(conn, diamond, ["a"])
    running = start_flow(conn, diamond, {})["run_id"]
    other = start_flow(conn, "other", {})["run_id"]

    page.goto(f"{served.url}/runs")
    rows = page.locator("table.runs tbody tr")
    expect(rows).to_have_count(3)
    page.get_by_label("Flow").select_option(diamond)
    page.get_by_label("Status").select_option("started")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run-id", str(running))
    assert "flow=diamond" in page.url
    assert "status=started" in page.url

    page.get_by_label("Find a run by id").fill(str(done))
    page.get_by_label("Find a run by id").press("Enter")
    expect(page).to_have_url(f"{served.url}/runs/{done}")
    expect(page.locator("#run-status")).to_have_text("completed")
    assert str(other) not in page.content()


def test_run_completes_live_without_reload(
    conn: psycopg.Connection, served: Served, diamond: str, page: Page
) -> None:
    run_id = start_flow(conn, diamond, {})["run_id"]
    page.goto(f"{served.url}/runs/{run_id}")
    expect(page.locator("#live-status")).to_have_text("live")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#run-status")).to_have_text("started")
    expect_fill(page, "root", "rgb(255, 243, 196)")  # started: yellow
    expect_fill(page, "join", "rgb(238, 240, 244)")  # created: grey

    page.locator("#node-join").focus()  # keyboard users keep their place across refreshes
    (root,) = read_and_start(conn, diamond)
    complete(conn, root, ["a", "b"])
    expect(page.locator('svg.dag a[data-step="root"]')).to_have_attribute(
        "data-status", "completed"
    )
    expect(page.locator('svg.dag a[data-step="each"] text.sub')).to_contain_text("0/2")
    while tasks := read_and_start(conn, diamond, qty=10):
        for task in tasks:
            complete(conn, task, {"ok": True})

    expect(page.locator("#run-status")).to_have_text("completed")
    for step in ("root", "left", "each", "join"):
        expect_fill(page, step, "rgb(215, 242, 220)")  # completed: green
    expect(page.locator('svg.dag a[data-step="each"] text.sub')).to_contain_text("2/2")
    expect(page.locator("ol.timeline li").last).to_contain_text("run:completed")
    assert page.evaluate("window.__sameDocument") is True  # never reloaded
    assert page.evaluate("document.activeElement.id") == "node-join"


def test_failed_step_is_red(
    conn: psycopg.Connection, served: Served, diamond: str, page: Page
) -> None:
    conn.execute("update pgflow.flows set opt_max_attempts = 1")
    run_id = start_flow(conn, diamond, {})["run_id"]
    (root,) = read_and_start(conn, diamond)
    fail(conn, root, "network down")
    page.goto(f"{served.url}/runs/{run_id}")
    expect_fill(page, "root", "rgb(251, 213, 213)")
    expect(page.locator("table.errors")).to_contain_text("network down")


def test_action_from_the_ui(
    conn: psycopg.Connection, as_role: RoleFactory, diamond: str, page: Page
) -> None:
    """Cancel, then retry, from the browser as a login granted pgflow_dashboard."""
    run_id = start_flow(conn, diamond, {})["run_id"]
    served = as_role("pgflow_dashboard")
    page.goto(f"{served.url}/runs/{run_id}")
    page.get_by_label("Reason (optional)").fill("maintenance <now>")
    page.get_by_role("button", name="Cancel run…").click()
    expect(page.get_by_role("heading", name="Cancel run?")).to_be_visible()
    assert run_row(conn, run_id)["status"] == "started"
    page.get_by_role("button", name="Yes, cancel run").click()
    expect(page.get_by_role("status").filter(has_text="Cancel run: done.")).to_be_visible()
    expect(page.locator("#run-status")).to_have_text("cancelled")
    expect(page.locator("#cancel-reason")).to_have_text("maintenance <now>")
    expect_fill(page, "root", "rgb(243, 217, 207)")  # cancelled
    assert run_row(conn, run_id)["cancel_reason"] == "maintenance <now>"

    page.get_by_role("button", name="Retry run…").click()
    page.get_by_role("button", name="Yes, retry run").click()
    expect(page.get_by_role("status").filter(has_text="Retry run: done.")).to_be_visible()
    (new,) = conn.execute(
        "select run_id from pgflow.runs where restart_of_run_id = %s", (run_id,)
    ).fetchone() or (None,)
    expect(page).to_have_url(f"{served.url}/runs/{new}?done=retry")
    expect(page.locator("#run-status")).to_have_text("started")
    page.locator("#restart-of").click()
    expect(page).to_have_url(f"{served.url}/runs/{run_id}")
    expect(page.locator("#restarts a")).to_have_text(str(new))


def test_xss_payload_renders_inert(
    conn: psycopg.Connection, served: Served, diamond: str, page: Page
) -> None:
    conn.execute("update pgflow.flows set opt_max_attempts = 1")
    run_id = start_flow(conn, diamond, {"x": XSS})["run_id"]
    (root,) = read_and_start(conn, diamond)
    complete(conn, root, [XSS])
    (left, *_rest) = read_and_start(conn, diamond, qty=3)
    fail(conn, left, XSS)
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)

    page.goto(f"{served.url}/runs/{run_id}")
    page.locator("details.json summary").first.click()

    expect(page.locator("table.errors pre.error").first).to_have_text(XSS)
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img").count() == 0
    assert page.locator("main script").count() == 0
    assert dialogs == []


def test_keyboard_navigation_and_labels(
    conn: psycopg.Connection, served: Served, diamond: str, page: Page
) -> None:
    run_id = run_diamond(conn, diamond, ["a"])
    page.goto(f"{served.url}/runs")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "q"  # first control of the page
    # every form control has a label (an accessible name)
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
           .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
           .map(el => el.name)"""
    )
    assert unlabelled == []
    # the run link is reachable by keyboard and opens with Enter
    link = page.get_by_role("link", name=str(run_id))
    link.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/runs/{run_id}$"))
    expect(page.locator("#live-status")).to_have_text("live")
    # DAG nodes are focusable links to their step rows
    node = page.locator('svg.dag a[data-step="join"]')
    node.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile("#step-join$"))


def test_screenshots(
    conn: psycopg.Connection, served: Served, diamond: str, page: Page, tmp_path: Path
) -> None:
    """A realistic mix of runs, and a picture of each main page; written to docs/ (for the
    README) when PGWEAVE_UPDATE_SCREENSHOTS=1, else to a temporary directory."""
    conn.execute("select pgflow.create_flow('analyze_website')")
    for step, deps in (
        ("website", []),
        ("summary", ["website"]),
        ("sentiment", ["website"]),
        ("save", ["summary", "sentiment"]),
    ):
        conn.execute("select pgflow.add_step('analyze_website', %s, %s)", (step, deps))
    for n in range(3):
        run_diamond(conn, diamond, [f"item{i}" for i in range(n + 2)])
    conn.execute("update pgflow.flows set opt_max_attempts = 1 where flow_slug = 'analyze_website'")
    for n in range(3):
        start_flow(conn, "analyze_website", {"url": f"https://example.com/{n}"})
    tasks = read_and_start(conn, "analyze_website", qty=3)
    complete(conn, tasks[0], "<html>…</html>")
    conn.execute(
        "select pgflow.fail_task_with_details(%s, 'website', 0, %s, error_type => 'TimeoutError',"
        " error_traceback => %s)",
        (tasks[1]["run_id"], "fetching https://example.com/1 took longer than 30 s",
         'Traceback (most recent call last):\n  File "flows.py", line 12, in website\nTimeoutError'),
    )  # fmt: skip
    conn.execute("select pgflow.cancel_run(%s, 'superseded')", (tasks[2]["run_id"],))
    live = start_flow(conn, diamond, {"items": ["x", "y", "z"]})["run_id"]
    (root,) = read_and_start(conn, diamond)
    complete(conn, root, ["x", "y", "z"])
    (first, *_rest) = [t for t in read_and_start(conn, diamond, qty=2) if t["step_slug"] == "each"]
    complete(conn, first, {"ok": True})
    ensure_worker(conn, diamond, uuid.UUID(int=1))
    ensure_worker(conn, "analyze_website", uuid.UUID(int=2))
    out = DOCS if os.environ.get("PGWEAVE_UPDATE_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(exist_ok=True)
    for name, path in (
        ("overview", "/"), ("runs", "/runs"), ("run", f"/runs/{live}"),
        ("flow", "/flows/analyze_website"), ("workers", "/workers"),
    ):  # fmt: skip
        page.goto(served.url + path)
        page.wait_for_load_state("networkidle") if name != "run" else page.wait_for_timeout(500)
        target = out / f"dashboard-{name}.png"
        page.screenshot(path=str(target), full_page=False)
        assert target.stat().st_size > 10_000
