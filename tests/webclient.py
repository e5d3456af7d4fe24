"""An HTTP client for a test server's HTTP side: JSON routes, pages and metrics."""

from __future__ import annotations

from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


class Web:
    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        """e.g. http://127.0.0.1:41234"""
        self.session = session

    async def get(self, path: str, **params: str | int) -> tuple[int, str]:
        async with self.session.get(self.base + path, params=params or None) as response:
            return response.status, await response.text()

    async def get_json(self, path: str, **params: str | int) -> Any:
        async with self.session.get(self.base + path, params=params or None) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def post_json(self, path: str, body: Any) -> Any:
        async with self.session.post(self.base + path, json=body) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def metrics(self) -> Metrics:
        status, text = await self.get("/metrics")
        assert status == 200
        return Metrics(text)


class Metrics:
    """One scrape of /metrics."""

    def __init__(self, text: str) -> None:
        self.samples = [
            sample for family in text_string_to_metric_families(text) for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sample `name` with exactly these labels (0 when absent, as a counter
        that never moved)."""
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) <= 1
        return found[0] if found else 0.0

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples `name` whose labels include these."""
        return sum(
            s.value for s in self.samples
            if s.name == name and labels.items() <= s.labels.items()
        )  # fmt: skip
