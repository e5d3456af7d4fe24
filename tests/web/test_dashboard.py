"""The dashboard's pages as a browser without JavaScript gets them: complete and escaped."""

from __future__ import annotations

import html
from dataclasses import replace

import aiohttp
from conftest import Running, StartServer
from rpc import create, fail, hold, register, report
from waiting import eventually
from webclient import Web

from asyncflow.config import Config
from asyncflow.core.validate import Limits

HOSTILE = '<script>alert("x")</script>'


async def test_pages_render_every_value_escaped(server: Running, web: Web) -> None:
    stub = server.stub
    await register(stub)
    task = await create(stub, user_id=HOSTILE, task_stage="send", context=HOSTILE)
    for path in ("/ui/tasks?task_type=lark", f"/ui/tasks/{task.task_id}"):
        status, page = await web.get(path)
        assert status == 200
        assert HOSTILE not in page
        assert "&lt;script&gt;" in page


async def test_types_page_shows_counts_settings_and_the_pause_button(
    server: Running, web: Web
) -> None:
    await register(server.stub, schedule_limit=7)
    for _ in range(2):
        await create(server.stub)

    async def counted() -> bool:
        page = (await web.get("/ui"))[1]
        return 'status=pending">2</a>' in page

    await eventually(counted, what="the periodic count reaches the page")
    status, page = await web.get("/ui")
    assert status == 200
    assert "batch 7" in page
    assert 'action="/ui/types/lark/pause"' in page
    assert 'action="/ui/types/lark/resume"' not in page  # it is not paused
    assert '<div id="live"' in page


async def test_task_list_filters(server: Running, web: Web) -> None:
    stub = server.stub
    await register(stub, max_retry_num=0)
    first = await create(stub, user_id="ann")
    second = await create(stub, user_id="bob", task_stage="two")
    (held,) = await hold(stub, limit=1)
    await report(stub, held, fail("broken"))
    page = (await web.get("/ui/tasks", task_type="lark", status="failed"))[1]
    assert first.task_id in page
    assert second.task_id not in page
    page = (await web.get("/ui/tasks", task_type="lark", user_id="bob"))[1]
    assert second.task_id in page
    assert first.task_id not in page
    page = (await web.get("/ui/tasks", task_type="lark", stage="two"))[1]
    assert second.task_id in page
    assert first.task_id not in page


async def test_task_list_pages(start_server: StartServer, config: Config) -> None:
    running = await start_server(replace(config, limits=Limits(default_page_size=1)))
    assert running.server.http is not None
    await register(running.stub)
    first, second = await create(running.stub), await create(running.stub)
    async with aiohttp.ClientSession() as session:
        web = Web(running.server.http.url, session)
        page = (await web.get("/ui/tasks", task_type="lark"))[1]
        assert first.task_id in page
        assert second.task_id not in page
        token = html.unescape(page.split("page_token=")[1].split('"')[0])
        page = (await web.get("/ui/tasks", task_type="lark", page_token=token))[1]
        assert second.task_id in page
        assert first.task_id not in page
        assert "First page" in page


async def test_task_page_shows_context_lease_and_history(server: Running, web: Web) -> None:
    stub = server.stub
    await register(stub, max_retry_num=0)
    task = await create(stub, context='{"to":"cat"}')
    (held,) = await hold(stub)
    page = (await web.get(f"/ui/tasks/{task.task_id}"))[1]
    assert "processing" in page
    assert "attempt" in page
    assert held.lease.token not in page  # the lease is the holder's secret
    assert f'action="/ui/tasks/{task.task_id}/cancel"' in page
    assert "/retry" not in page  # a PROCESSING task cannot be retried
    await report(stub, held, fail("smtp down"))
    page = (await web.get(f"/ui/tasks/{task.task_id}"))[1]
    assert "smtp down" in page
    assert "failed" in page
    assert "&#34;to&#34;: &#34;cat&#34;" in page  # pretty-printed, escaped
    assert f'action="/ui/tasks/{task.task_id}/retry"' in page
    assert "/cancel" not in page  # a FAILED task cannot be cancelled


async def test_the_root_leads_to_the_dashboard(web: Web) -> None:
    status, page = await web.get("/")
    assert status == 200
    assert "<h1>Task types</h1>" in page


async def test_partial_is_the_live_part_alone(server: Running, web: Web) -> None:
    await register(server.stub)
    page = (await web.get("/ui/tasks", task_type="lark", partial="1"))[1]
    assert "<html" not in page
    assert 'class="filters"' not in page


async def test_bad_requests_get_a_page_with_the_reason(server: Running, web: Web) -> None:
    await register(server.stub)
    assert (await web.get("/ui/tasks/not-an-id"))[0] == 400
    assert (await web.get("/ui/tasks/7a0c5a2e-aaaa-bbbb-cccc-000000000000_lark_1"))[0] == 404
    assert (await web.get("/ui/tasks", task_type="nope"))[0] == 404
    status, page = await web.get("/ui/tasks", task_type="lark", status="lost")
    assert status == 400
    assert "is not a task status" in page
