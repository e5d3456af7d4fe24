"""The dashboard's actions as a browser without JavaScript sends them: form POSTs
with the CSRF cookie and token, redirects with a flash message, each checked
against the store through the gRPC API; and every POST the CSRF guard refuses
changes nothing."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from conftest import Running
from rpc import SUCCESS, create, fail, get, hold, register, report
from streams import RawWorker, Request

from asyncflow.http.csrf import COOKIE
from asyncflow.v1 import task_service_pb2 as pb

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """Cookies kept across requests (127.0.0.1 too), redirects not followed."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def page(self, path: str) -> str:
        async with self.session.get(self.base + path) as response:
            assert response.status == 200, await response.text()
            return await response.text()

    async def token(self, path: str) -> str:
        """The CSRF token of the page's forms."""
        match = TOKEN.search(await self.page(path))
        assert match, f"no form on {path}"
        return match.group(1)

    async def post(
        self, path: str, fields: dict[str, str], headers: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """(status, Location, body); sent from a page of this server unless
        `headers` says otherwise."""
        async with self.session.post(
            self.base + path,
            data=fields,
            headers={"Origin": self.base} if headers is None else headers,
            allow_redirects=False,
        ) as response:
            return response.status, response.headers.get("Location", ""), await response.text()

    async def act(self, page: str, action: str, **fields: str) -> str:
        """Press the button `action` (a POST path) of `page`: the page it leads back to."""
        token = await self.token(page)
        status, location, body = await self.post(action, {"csrf_token": token, **fields})
        assert status == 303, body
        return await self.page(location)


async def new_browser(server: Running) -> AsyncIterator[Browser]:
    assert server.server.http is not None
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield Browser(server.server.http.url, session)


browser = pytest.fixture(name="browser")(new_browser)
other_browser = pytest.fixture(name="other_browser")(new_browser)


async def failed_task(server: Running) -> pb.Task:
    """A FAILED task of `lark` (no retries left), through the gRPC API."""
    await register(server.stub, max_retry_num=0)
    task = await create(server.stub)
    (held,) = await hold(server.stub)
    await report(server.stub, held, fail("smtp down"))
    return task


def flash(page: str) -> str:
    match = re.search(r'<p class="flash flash-(\w+)" role="status">(.*?)</p>', page, re.S)
    return f"{match.group(1)}: {html.unescape(match.group(2))}" if match else ""


async def test_retry_a_failed_task(server: Running, browser: Browser) -> None:
    task = await failed_task(server)
    page = await browser.act(f"/ui/tasks/{task.task_id}", f"/ui/tasks/{task.task_id}/retry")
    assert flash(page) == f"ok: Task {task.task_id} retried: PENDING at stage “”."
    assert (await get(server.stub, task.task_id)).status == pb.TASK_STATUS_PENDING
    assert "/cancel" in page  # the page it leads back to is the task's, now PENDING
    assert flash(await browser.page(f"/ui/tasks/{task.task_id}")) == ""  # shown once


async def test_retry_at_another_stage(server: Running, browser: Browser) -> None:
    task = await failed_task(server)
    path = f"/ui/tasks/{task.task_id}"
    await browser.act(path, path + "/retry", task_stage="  again ")
    after = await get(server.stub, task.task_id)
    assert (after.status, after.task_stage) == (pb.TASK_STATUS_PENDING, "again")


async def test_cancel_a_pending_task(server: Running, browser: Browser) -> None:
    await register(server.stub)
    task = await create(server.stub)
    path = f"/ui/tasks/{task.task_id}"
    page = await browser.act(path, path + "/cancel", reason="not needed")
    assert flash(page) == f"ok: Task {task.task_id} is CANCELLED."
    after = await get(server.stub, task.task_id)
    assert after.status == pb.TASK_STATUS_CANCELLED
    assert "not needed" in after.schedule_log
    assert f'action="{path}/retry"' in page  # a CANCELLED task can be retried


async def test_cancel_a_running_task_tells_its_worker(server: Running, browser: Browser) -> None:
    """The dashboard's TaskControl is the server's: the stream holding the task is told."""
    await register(server.stub)
    task = await create(server.stub)
    raw = RawWorker(server.stub)
    try:
        await raw.subscribe("lark", window=1)
        await raw.until(tasks=1)
        await raw.send(Request(started=Request.Started(task_ids=[task.task_id])))
        path = f"/ui/tasks/{task.task_id}"
        await browser.act(path, path + "/cancel", reason="stop it")
        await raw.until(answers=1)
        notice = raw.answers[0]
        assert notice.WhichOneof("response") == "cancelled"
        assert (list(notice.cancelled.task_ids), notice.cancelled.reason) == (
            [task.task_id], "stop it")  # fmt: skip
    finally:
        raw.cancel()
    assert (await get(server.stub, task.task_id)).status == pb.TASK_STATUS_CANCELLED


async def paused(server: Running, task_type: str = "lark") -> bool:
    reply = await server.stub.ListTaskTypes(pb.ListTaskTypesRequest())
    (config,) = [t for t in reply.task_types if t.task_type == task_type]
    return config.paused


async def test_pause_and_resume_a_type_from_the_types_page(
    server: Running, browser: Browser
) -> None:
    await register(server.stub)
    task = await create(server.stub)
    page = await browser.act("/ui", "/ui/types/lark/pause", back="/ui")
    assert flash(page).startswith("ok: Task type lark paused")
    assert await paused(server)
    assert 'class="paused"' in page
    assert 'action="/ui/types/lark/resume"' in page
    assert await hold(server.stub) == []
    page = await browser.act("/ui", "/ui/types/lark/resume", back="/ui")
    assert flash(page) == "ok: Task type lark resumed."
    assert not await paused(server)
    assert [t.task_id for t in await hold(server.stub)] == [task.task_id]


async def test_pause_from_the_task_list_leads_back_to_it(server: Running, browser: Browser) -> None:
    await register(server.stub)
    here = "/ui/tasks?task_type=lark&status=pending"
    token = await browser.token(here)
    status, location, _ = await browser.post(
        "/ui/types/lark/pause", {"csrf_token": token, "back": here}
    )
    assert (status, location) == (303, here)
    assert await paused(server)
    page = await browser.page(location)
    assert "none of its tasks is held or pushed" in page
    assert 'action="/ui/types/lark/resume"' in page


@pytest.mark.parametrize("back", ["https://evil.example/ui", "//evil.example/ui", "/v1/ping",
                                  "/ui\\..\\x", "/uix"])  # fmt: skip
async def test_a_form_leads_back_only_to_the_dashboard(
    server: Running, browser: Browser, back: str
) -> None:
    await register(server.stub)
    token = await browser.token("/ui")
    status, location, _ = await browser.post(
        "/ui/types/lark/pause", {"csrf_token": token, "back": back}
    )
    assert (status, location) == (303, "/ui")


async def test_a_refused_action_shows_the_core_reason(server: Running, browser: Browser) -> None:
    await register(server.stub)
    task = await create(server.stub)
    (held,) = await hold(server.stub)
    await report(server.stub, held, SUCCESS)
    path = f"/ui/tasks/{task.task_id}"
    assert "/retry" not in await browser.page(path)  # no button: a page drawn before it ended
    page = await browser.act("/ui", path + "/retry")
    assert flash(page) == (
        f"error: Retry refused: task {task.task_id} is SUCCESS: only FAILED or CANCELLED"
        " tasks can be retried"
    )
    assert (await get(server.stub, task.task_id)).status == pb.TASK_STATUS_SUCCESS
    page = await browser.act("/ui", "/ui/types/nope/pause")
    assert flash(page) == "error: Pause refused: task type 'nope' is not registered"


async def test_an_unknown_action_is_not_found(server: Running, browser: Browser) -> None:
    task = await failed_task(server)
    token = await browser.token("/ui")
    status, _, _ = await browser.post(f"/ui/tasks/{task.task_id}/delete", {"csrf_token": token})
    assert status == 404
    assert (await get(server.stub, task.task_id)).status == pb.TASK_STATUS_FAILED


async def test_the_csrf_cookie_is_http_only_and_same_site_strict(server: Running) -> None:
    assert server.server.http is not None
    url = server.server.http.url + "/ui"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        cookie = response.cookies[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"


async def test_a_post_from_a_page_with_a_referer_and_no_origin_is_taken(
    server: Running, browser: Browser
) -> None:
    task = await failed_task(server)
    path = f"/ui/tasks/{task.task_id}"
    token = await browser.token(path)
    status, _, _ = await browser.post(
        path + "/retry", {"csrf_token": token}, headers={"Referer": browser.base + path}
    )
    assert status == 303
    assert (await get(server.stub, task.task_id)).status == pb.TASK_STATUS_PENDING


REFUSALS = {
    "no token": ({}, None, "token is missing or wrong"),
    "a bad token": ({"csrf_token": "x" * 43}, None, "token is missing or wrong"),
    "a non-ASCII token": ({"csrf_token": "é"}, None, "token is missing or wrong"),
    "another origin": ({}, {"Origin": "http://evil.example"}, "is not this server"),
    "an opaque origin": ({}, {"Origin": "null"}, "is not this server"),
    "another referer": ({}, {"Referer": "http://evil.example/ui"}, "is not this server"),
    "no origin nor referer": ({}, {}, "neither an Origin nor a Referer"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_a_post_without_a_valid_token_or_origin_is_refused_and_changes_nothing(
    server: Running, browser: Browser, case: str
) -> None:
    fields, headers, reason = REFUSALS[case]
    task = await failed_task(server)
    token = await browser.token(f"/ui/tasks/{task.task_id}")
    if not fields and headers is not None:  # the token is right: the origin is wrong
        fields = {"csrf_token": token}
    for action in (f"/ui/tasks/{task.task_id}/retry", "/ui/types/lark/pause"):
        status, _, body = await browser.post(action, fields, headers)
        assert (status, reason in body) == (403, True), body
    assert (await get(server.stub, task.task_id)).status == pb.TASK_STATUS_FAILED
    assert not await paused(server)


async def test_a_token_works_only_with_its_own_cookie(
    server: Running, browser: Browser, other_browser: Browser
) -> None:
    task = await failed_task(server)
    path = f"/ui/tasks/{task.task_id}"
    stolen = await browser.token(path)
    own = await other_browser.token(path)
    assert stolen != own
    status, _, body = await other_browser.post(path + "/retry", {"csrf_token": stolen})
    assert status == 403, body
    assert (await get(server.stub, task.task_id)).status == pb.TASK_STATUS_FAILED


async def test_a_post_without_the_cookie_is_refused(server: Running, browser: Browser) -> None:
    task = await failed_task(server)
    path = f"/ui/tasks/{task.task_id}"
    token = await browser.token(path)
    browser.session.cookie_jar.clear()
    status, _, body = await browser.post(path + "/retry", {"csrf_token": token})
    assert (status, "no CSRF cookie" in body) == (403, True), body
    assert (await get(server.stub, task.task_id)).status == pb.TASK_STATUS_FAILED
