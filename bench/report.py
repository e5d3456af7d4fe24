"""One figure of `python -m bench`: what was measured, the value, and issue 9's target."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    item: int
    """The target of issue 9 it measures (1-7)."""
    what: str
    value: float
    unit: str
    target: str = ""
    """The issue's target in words ("" when the figure is context, not a target)."""
    met: bool | None = None
    backend: str = "mysql"
    """mysql (MariaDB + Redis) or sqlite (SQLite + the in-process cache)."""

    def row(self) -> str:
        value = f"{self.value:,.2f}" if abs(self.value) < 100 else f"{self.value:,.0f}"
        met = {True: "yes", False: "no", None: ""}[self.met]
        cells = (self.item, self.backend, self.what, f"{value} {self.unit}", self.target, met)
        return "| " + " | ".join(map(str, cells)) + " |"


def table(figures: list[Figure]) -> str:
    lines = ["| item | backend | measure | value | target | met |", "|---|---|---|---|---|---|"]
    return "\n".join(lines + [f.row() for f in sorted(figures, key=lambda f: f.item)])


def save(figures: list[Figure], path: Path) -> None:
    path.write_text(json.dumps([asdict(f) for f in figures], indent=1) + "\n")
