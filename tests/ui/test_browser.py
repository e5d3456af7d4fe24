"""The dashboard in a real browser (headless Chromium): see, filter, open, act
(retry, cancel, pause, resume: each checked through the gRPC API), live refresh."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from chromium import chromium
from conftest import Running
from playwright.async_api import Browser, Page, expect
from rpc import create, fail, get, hold, register, report

from asyncflow.v1 import task_service_pb2 as pb


@pytest.fixture
def backend() -> str:
    """The browser's side is the same on every store: SQLite is enough."""
    return "sqlite"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    try:
        yield await context.new_page()
    finally:
        await context.close()


def url(server: Running, path: str) -> str:
    assert server.server.http is not None
    return server.server.http.url + path


async def test_see_a_task_filter_by_status_open_a_failed_one_and_retry_it(
    server: Running, page: Page
) -> None:
    stub = server.stub
    await register(stub, max_retry_num=0)
    doomed = await create(stub, user_id="ann", context='{"to":"cat"}')
    (held,) = await hold(stub)
    await report(stub, held, fail("smtp down"))
    waiting = await create(stub, user_id="bob")

    await page.goto(url(server, "/ui"))
    await expect(page.locator("h1")).to_have_text("Task types")
    await page.get_by_role("link", name="lark", exact=True).click()
    await expect(page.get_by_role("link", name=waiting.task_id)).to_be_visible()
    await expect(page.get_by_role("link", name=doomed.task_id)).to_be_visible()

    await page.locator("select[name=status]").select_option("failed")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"status=failed"))
    await expect(page.get_by_role("link", name=doomed.task_id)).to_be_visible()
    await expect(page.get_by_role("link", name=waiting.task_id)).to_have_count(0)

    await page.get_by_role("link", name=doomed.task_id).click()
    await expect(page.locator("h1")).to_have_text(doomed.task_id)
    await expect(page.locator(".status").first).to_have_text("failed")
    await expect(page.locator("table.history")).to_contain_text("smtp down")
    await expect(page.locator("pre.context")).to_contain_text('"to": "cat"')

    await expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    await page.get_by_role("button", name="Retry").click()
    await expect(page.locator(".flash")).to_have_text(
        f"Task {doomed.task_id} retried: PENDING at stage “”."
    )
    await expect(page.locator(".status").first).to_have_text("pending")
    assert (await get(stub, doomed.task_id)).status == pb.TASK_STATUS_PENDING
    await expect(page.get_by_role("button", name="Retry")).to_have_count(0)


async def test_cancel_a_pending_task(server: Running, page: Page) -> None:
    await register(server.stub)
    task = await create(server.stub)
    await page.goto(url(server, f"/ui/tasks/{task.task_id}"))
    await page.get_by_label("reason").fill("sent twice")
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.locator(".flash")).to_have_text(f"Task {task.task_id} is CANCELLED.")
    await expect(page.locator(".status").first).to_have_text("cancelled")
    after = await get(server.stub, task.task_id)
    assert after.status == pb.TASK_STATUS_CANCELLED
    assert "sent twice" in after.schedule_log


async def paused(server: Running) -> bool:
    reply = await server.stub.ListTaskTypes(pb.ListTaskTypesRequest())
    (config,) = reply.task_types
    return config.paused


async def test_pause_and_resume_a_type(server: Running, page: Page) -> None:
    await register(server.stub)
    await page.goto(url(server, "/ui"))
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator(".flash")).to_contain_text("Task type lark paused")
    await expect(page.locator("td .paused")).to_have_text("paused")
    assert await paused(server)
    await page.get_by_role("link", name="lark", exact=True).click()  # its task list
    await expect(page.locator(".type-state")).to_contain_text("none of its tasks is held")
    await page.get_by_role("button", name="Resume").click()
    await expect(page.locator(".flash")).to_have_text("Task type lark resumed.")
    await expect(page).to_have_url(re.compile(r"/ui/tasks\?task_type=lark"))
    await expect(page.get_by_role("button", name="Pause")).to_be_visible()
    assert not await paused(server)


async def test_the_list_refreshes_itself_without_a_reload(server: Running, page: Page) -> None:
    await register(server.stub)
    await page.goto(url(server, "/ui/tasks?task_type=lark"))
    await expect(page.locator("#live-toggle")).to_be_visible()
    await page.evaluate("window.notReloaded = true")
    task = await create(server.stub)
    await expect(page.get_by_role("link", name=task.task_id)).to_be_visible(timeout=15_000)
    assert await page.evaluate("window.notReloaded") is True


async def test_pages_read_and_act_with_javascript_off(server: Running, browser: Browser) -> None:
    await register(server.stub)
    task = await create(server.stub)
    context = await browser.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        await page.goto(url(server, "/ui/tasks?task_type=lark"))
        await expect(page.get_by_role("link", name=task.task_id)).to_be_visible()
        await expect(page.locator("#live-toggle")).to_be_hidden()
        await page.get_by_role("link", name=task.task_id).click()
        await expect(page.locator("h1")).to_have_text(task.task_id)
        await page.get_by_role("button", name="Cancel").click()  # forms need no script
        await expect(page.locator(".flash")).to_have_text(f"Task {task.task_id} is CANCELLED.")
        assert (await get(server.stub, task.task_id)).status == pb.TASK_STATUS_CANCELLED
    finally:
        await context.close()
