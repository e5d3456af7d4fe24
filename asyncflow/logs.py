"""Logging: plain text for people or one JSON object per line for collectors, and a
rate-limited log for what clients do wrong."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from asyncflow.config import LogConfig
from asyncflow.core.ports import Clock

STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Structured fields passed with logging's `extra=` land in the object.
        entry.update({k: v for k, v in vars(record).items() if k not in STANDARD_ATTRS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _ProcessTag(logging.Filter):
    """Marks every record with the index of the server process that wrote it
    (`serve --processes N`), since the N processes share one output."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.server_process = self.index
        return True


def setup_logging(config: LogConfig, process: int | None = None) -> None:
    """`process`: the index of this server process among several (a "[process I]"
    tag in text, a "server_process" field in JSON)."""
    handler = logging.StreamHandler()
    tag = "" if process is None else "[process %(server_process)s] "
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s")
        )
    if process is not None:
        handler.addFilter(_ProcessTag(process))
    logging.basicConfig(level=config.level, handlers=[handler], force=True)


@dataclass
class _Budget:
    """One reason's lines in the current interval."""

    start: int
    logged: int = 0
    suppressed: int = 0
    carried: int = 0
    """Lines suppressed in earlier intervals, not yet told."""


class ClientErrorLog:
    """WARNING lines about bad requests: at most `limit` per reason per `interval` seconds.

    Any client can send bad requests as fast as it likes, so one line each would
    let it flood the log. Lines over the budget are only counted; the next line
    of that reason let through says how many were left out (and carries the
    count as the `suppressed` field). Never a traceback: the request is at
    fault, not the server. Messages must not quote request bytes.
    """

    def __init__(
        self, logger: logging.Logger, clock: Clock, *, limit: int = 5, interval: int = 60
    ) -> None:
        self._logger = logger
        self._clock = clock
        self._limit = limit
        self._interval = interval
        self._budgets: dict[str, _Budget] = {}
        """Keyed by reason: asyncflow's own names, so the dict stays small."""

    def warning(self, reason: str, message: str) -> None:
        now = self._clock.now()
        budget = self._budgets.get(reason)
        if budget is None or now >= budget.start + self._interval:
            carried = budget.carried + budget.suppressed if budget else 0
            budget = self._budgets[reason] = _Budget(start=now, carried=carried)
        if budget.logged >= self._limit:
            budget.suppressed += 1
            return
        budget.logged += 1
        suppressed, budget.carried = budget.carried, 0
        if suppressed:
            message += f" ({suppressed} more {reason} lines were suppressed before this one)"
        self._logger.warning("%s", message, extra={"reason": reason, "suppressed": suppressed})
