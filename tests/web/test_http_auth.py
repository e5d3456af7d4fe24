"""The HTTP side with [auth] on: /v1 and /metrics take the gRPC side's tokens and
roles; the dashboard asks for a token once (a session cookie), its forms keep
their CSRF check, and its buttons need the admin role."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from conftest import Running, StartServer
from rpc import create, register
from secure import ROLES, Tokens, channel, stub
from test_actions import Browser

from asyncflow.config import Config
from asyncflow.http.auth import ROUTES, SESSION_COOKIE
from asyncflow.server.auth.roles import ALLOWED

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
V1 = sorted((verb, path) for verb, path in ROUTES if path.startswith("/v1") or path == "/metrics")


@pytest.fixture
async def browser(secured: Running) -> AsyncIterator[Browser]:
    assert secured.server.http is not None
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield Browser(secured.server.http.url, session)


async def status(secured: Running, verb: str, path: str, token: str | None) -> int:
    assert secured.server.http is not None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            verb,
            secured.server.http.url + path,
            headers=headers,
            json={} if verb == "POST" else None,
        ) as response,
    ):
        return response.status


async def test_v1_and_metrics_follow_the_role_table(secured: Running, tokens: Tokens) -> None:
    for verb, path in V1:
        assert await status(secured, verb, path, None) == 401, path
        assert await status(secured, verb, path, "aft_unknown") == 401, path
        for role in ROLES:
            got = await status(secured, verb, path, tokens.tokens[role])
            allowed = role in ALLOWED[ROUTES[(verb, path)]]
            assert (got == 403) is not allowed, (path, role, got)
    assert await status(secured, "GET", "/healthz", None) == 200


async def test_metrics_may_stay_open(start_server: StartServer, config: Config,
                                     tokens: Tokens) -> None:  # fmt: skip
    server = await start_server(replace(config, auth=tokens.auth(metrics_open=True)))
    assert await status(server, "GET", "/metrics", None) == 200
    assert await status(server, "GET", "/v1/ping", None) == 401


async def test_a_type_limited_worker_on_v1(secured: Running, tokens: Tokens) -> None:
    assert secured.server.http is not None
    admin = {"Authorization": f"Bearer {tokens.tokens['admin']}"}
    worker = {"Authorization": f"Bearer {tokens.add('a-only', ['worker'], ['a'])}"}
    secured.server.reload()
    url = secured.server.http.url
    async with aiohttp.ClientSession() as session:
        for task_type in ("a", "b"):
            async with session.post(f"{url}/v1/register_task", headers=admin,
                                    json={"task_type": task_type}) as response:  # fmt: skip
                assert response.status == 200
        async with session.post(f"{url}/v1/hold_tasks", headers=worker,
                                json={"task_type": "b"}) as response:  # fmt: skip
            body = await response.json()
        assert body["error"]["reason"] == "TASK_TYPE_NOT_ALLOWED"
        async with session.post(f"{url}/v1/hold_tasks", headers=worker,
                                json={"task_type": "a"}) as response:  # fmt: skip
            assert "error" not in await response.json()


async def test_dashboard_login_session_and_buttons(
    secured: Running, tokens: Tokens, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asyncflow.audit")
    async with browser.session.get(browser.base + "/ui/tasks?x=1", allow_redirects=False) as r:
        where = urlsplit(r.headers["Location"])
        assert (r.status, where.path, parse_qs(where.query)) == (
            303,
            "/ui/login",
            {"next": ["/ui/tasks?x=1"]},
        )
    login = await browser.token("/ui/login")
    code, _, body = await browser.post("/ui/login", {"csrf_token": login, "token": "aft_nope"})
    assert code == 401
    assert "not known" in body
    # No CSRF token: refused before the token is even looked at.
    code, _, _ = await browser.post("/ui/login", {"token": tokens.tokens["reader"]})
    assert code == 403
    fields = {"csrf_token": login, "token": tokens.tokens["reader"], "next": "/ui/tasks"}
    async with browser.session.post(browser.base + "/ui/login", data=fields, allow_redirects=False,
                                    headers={"Origin": browser.base}) as r:  # fmt: skip
        assert (r.status, r.headers["Location"]) == (303, "/ui/tasks")
        cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "reader" in await browser.page("/ui")

    # A reader sees the pages but may not press the buttons.
    admin_channel = channel(secured.server.port, token=tokens.tokens["admin"])
    await register(stub(admin_channel))
    await create(stub(admin_channel))
    await admin_channel.close()
    token = await browser.token("/ui")
    assert token != login  # the CSRF token is bound to the session
    code, _, _ = await browser.post("/ui/types/lark/pause", {"csrf_token": token})
    assert code == 403

    # Logged out: back to the login page; an admin presses the button, audited.
    code, location, _ = await browser.post("/ui/logout", {"csrf_token": token})
    assert (code, location) == (303, "/ui/login")
    login = await browser.token("/ui/login")
    await browser.post("/ui/login", {"csrf_token": login, "token": tokens.tokens["admin"]})
    await browser.act("/ui", "/ui/types/lark/pause")
    lines = [r.getMessage() for r in caplog.records if r.name == "asyncflow.audit"]
    assert lines[-1] == "PauseTaskType by admin (token): HTTP 303 task_type=lark", lines

    # A token removed from the file ends its sessions (at the reload).
    tokens.entries = [e for e in tokens.entries if 'name = "admin"' not in e]
    tokens.save()
    secured.server.reload()
    async with browser.session.get(browser.base + "/ui", allow_redirects=False) as r:
        assert r.status == 303
