"""The CSRF guard on its own, in a small aiohttp app of its own (as a login page
would reuse it): which paths and methods it guards, the header form of the
token, and tokens bound to a session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from asyncflow.http.csrf import HEADER, CsrfGuard, token_of


async def form(request: web.Request) -> web.Response:
    guard: CsrfGuard = request.app[GUARD]
    return web.Response(text=guard.token(request))


async def done(request: web.Request) -> web.Response:
    return web.Response(text="done")


GUARD = web.AppKey("guard", CsrfGuard)


@pytest.fixture
async def base() -> AsyncIterator[str]:
    guard = CsrfGuard("/ui", binding=lambda request: request.headers.get("X-Session", ""))
    app = web.Application(middlewares=[guard.middleware])
    app[GUARD] = guard
    app.add_routes([web.get("/ui/form", form), web.route("*", "/ui/do", done),
                    web.post("/uix/do", done), web.post("/do", done)])  # fmt: skip
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def token(session: aiohttp.ClientSession, base: str, who: str = "") -> str:
    async with session.get(base + "/ui/form", headers={"X-Session": who}) as response:
        return await response.text()


async def send(session: aiohttp.ClientSession, base: str, method: str, path: str,
               headers: dict[str, str]) -> int:  # fmt: skip
    async with session.request(method, base + path, headers={"Origin": base, **headers}) as reply:
        return reply.status


async def test_only_paths_under_the_prefix_are_guarded(
    base: str, session: aiohttp.ClientSession
) -> None:
    assert await send(session, base, "POST", "/ui/do", {}) == 403
    assert await send(session, base, "POST", "/uix/do", {}) == 200
    assert await send(session, base, "POST", "/do", {}) == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_every_unsafe_method_needs_the_token(
    base: str, session: aiohttp.ClientSession, method: str
) -> None:
    good = await token(session, base)
    assert await send(session, base, method, "/ui/do", {}) == 403
    assert await send(session, base, method, "/ui/do", {HEADER: good}) == 200
    assert await send(session, base, "GET", "/ui/do", {}) == 200


async def test_the_same_browser_keeps_its_token(base: str, session: aiohttp.ClientSession) -> None:
    first = await token(session, base)
    assert await token(session, base) == first
    (cookie,) = session.cookie_jar
    assert token_of(cookie.value) == first


async def test_a_bound_token_works_only_in_its_session(
    base: str, session: aiohttp.ClientSession
) -> None:
    ann = await token(session, base, "ann")
    assert ann != await token(session, base, "bob")
    assert await send(session, base, "POST", "/ui/do", {HEADER: ann, "X-Session": "bob"}) == 403
    assert await send(session, base, "POST", "/ui/do", {HEADER: ann, "X-Session": "ann"}) == 200
