"""Screenshots of the dashboard for docs/dashboard.md: `make screenshots`.

Starts a server on a scratch SQLite file, plays a small day of the original's
`lark` example (successes, a retry, failures, a cancel, tasks still held, a
paused type), then saves each page with headless Chromium (Debian's, through
Playwright) to docs/img/, and last the failed task's page after pressing Retry.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from chromium import chromium

from asyncflow.config import CacheConfig, Config, HttpConfig, ServerConfig, StoreConfig
from asyncflow.core.control import TaskControl
from asyncflow.core.governance import GovernanceSettings
from asyncflow.core.model import CreateRequest, Fail, NextStage, Retry, Success, TypeSettings
from asyncflow.server.app import AsyncflowServer

IMAGES = Path(__file__).parent / "img"
USERS = ("fish", "cat", "owl", "fox")


async def play(control: TaskControl) -> str:
    """Some history to look at; returns the id of a failed task."""
    core = control.core
    await core.register_type(TypeSettings("lark", max_retry_num=1, retry_interval=30))
    await core.register_type(TypeSettings("invoice", schedule_limit=20))
    for n in range(14):
        message = {"Msg": f"hello #{n}", "FromAddr": USERS[n % 4], "ToAddr": USERS[(n + 1) % 4]}
        await core.create_task(
            CreateRequest("lark", user_id=USERS[n % 4], task_stage="sendmsg",
                          context=json.dumps(message), priority=n % 3)
        )  # fmt: skip
    for n in range(5):
        await core.create_task(CreateRequest("invoice", user_id=f"acct-{n}", task_stage="draft"))
    held = await core.hold_tasks("lark", 10)
    await core.set_task(held[0].task_id, held[0].lease_token, Fail("mailbox does not exist"))
    for task in held[1:5]:
        await core.set_task(task.task_id, task.lease_token, NextStage("record"))
    await core.set_task(held[5].task_id, held[5].lease_token, Retry("smtp timeout"))
    await core.set_task(held[6].task_id, held[6].lease_token, Success())
    for task in await core.hold_tasks("lark", 3):
        await core.set_task(task.task_id, task.lease_token, Success())
    await core.hold_tasks("invoice", 2)
    await control.cancel_task(held[7].task_id, "sent twice")
    await control.pause_type("invoice")
    return held[0].task_id


async def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        config = Config(
            server=ServerConfig(port=0),
            store=StoreConfig(sqlite_path=str(Path(scratch) / "screens.db")),
            cache=CacheConfig(backend="memory"),
            governance=GovernanceSettings(enabled=False),
            http=HttpConfig(port=0),
        )
        server = await AsyncflowServer.start(config)
        try:
            assert server.http is not None
            await server.http.depth.refresh()
            failed = await play(server.control)
            await server.http.depth.refresh()
            base = server.http.url
            IMAGES.mkdir(exist_ok=True)
            async with chromium() as browser:
                page = await browser.new_page(viewport={"width": 1280, "height": 720})
                for name, path in (
                    ("dashboard-types", "/ui"),
                    ("dashboard-tasks", "/ui/tasks?task_type=lark"),
                    ("dashboard-failed", "/ui/tasks?task_type=lark&status=failed"),
                    ("dashboard-task", f"/ui/tasks/{failed}"),
                ):
                    await page.goto(base + path)
                    await page.screenshot(path=str(IMAGES / f"{name}.png"), full_page=True)
                    print(f"docs/img/{name}.png")
                await page.get_by_role("button", name="Retry").click()
                await page.locator(".flash").wait_for()
                await page.screenshot(path=str(IMAGES / "dashboard-retried.png"), full_page=True)
                print("docs/img/dashboard-retried.png")
        finally:
            await server.stop(0)


if __name__ == "__main__":
    asyncio.run(main())
