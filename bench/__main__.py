"""Every target of issue 9, measured in one run: `make bench` or

    python -m bench [--quick] [--backend mysql|sqlite] [--processes N] [--json FILE] [ITEM ...]

ITEM is a number 1-7 of issue 9's targets (default: all):
  1 CreateTask and GetTask (cache hit) calls/s under h2load, as a ratio to the
    echo servicer in the same run (bench.rpc), with server CPU ms per call
  2 one-by-one Client.create p50/p95 (bench.create)
  3 create_many tasks/s, batches of 1,000 (bench.create)
  4 drain of 20,000 no-op tasks by two `asyncflow worker` processes (bench.drain)
  5 create -> handler start with an idle worker, 200 tasks 20 ms apart (bench.latency)
  6 server RSS with 1,000,000 pending tasks and 100 idle streams (bench.memory; MariaDB)
  7 1 vs 2 `asyncflow serve` replicas on one MariaDB, create and drain (bench.replicas)

Items 1-5 run on each --backend (default both). On MariaDB, items 1 and 4 also
run against `asyncflow serve --processes N` for each --processes N > 1 (default
2; `--processes 1` alone skips them), next to the one-process figures. --quick runs every item small
(about a minute): a smoke test of the benchmarks, not a measurement. Each
benchmark checks its work in the store (tasks counted, SUCCESS counted) and
fails rather than print a figure for work that did not happen.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import create, drain, latency, memory, replicas, rpc
from bench.report import Figure, save, table


def calls(backend: str, quick: bool, processes: list[int]) -> list[Figure]:
    """Item 1: bench.rpc's rounds, averaged per method and server; several
    `processes`: a server each, loaded in turn after each echo run (the echo
    servicer stays one process)."""
    argv = ["--backend", backend, "--processes", *map(str, processes)]
    argv += ["--duration", "1", "--rounds", "1"] if quick else ["--duration", "5", "--rounds", "2"]
    rounds = rpc.measure(rpc.options(argv))
    figures = []
    for (method, floor), count in itertools.product(
        (("CreateTask", 0.85), ("GetTask", 0.90)), processes
    ):
        mine = [r for r in rounds if r.method == method and r.processes == count]
        ratio = statistics.mean(r.ratio for r in mine)
        rate = statistics.mean(r.asyncflow.calls_per_second for r in mine)
        echo = statistics.mean(r.echo.calls_per_second for r in mine)
        cpu = statistics.mean(r.asyncflow.server_cpu_ms_per_call for r in mine)
        echo_cpu = statistics.mean(r.echo.server_cpu_ms_per_call for r in mine)
        what = f"{method}{' (cache hit)' if method == 'GetTask' else ''}"
        if count > 1:
            what += f", serve --processes {count}"
        figures += [
            Figure(1, f"{what}: / echo", ratio * 100, "%", f">= {floor:.0%} of echo",
                   ratio >= floor, backend),
            Figure(1, f"{what}: calls/s (echo {echo:,.0f})", rate, "calls/s", backend=backend),
            Figure(1, f"{what}: server CPU per call (echo {echo_cpu:.3f})", cpu, "ms",
                   backend=backend),
            # calls/s of a CPU-bound server go as 1 / CPU per call, and CPU per call
            # hardly moves when other processes load the machine: the steadier ratio.
            Figure(1, f"{what}: echo CPU per call / server CPU per call", 100 * echo_cpu / cpu,
                   "%", backend=backend),
        ]  # fmt: skip
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("items", nargs="*", type=int, metavar="ITEM", help="1-7 (default: all)")
    parser.add_argument("--quick", action="store_true", help="every item small: a smoke run")
    parser.add_argument("--backend", choices=("mysql", "sqlite"), action="append",
                        help="items 1-5 on this backend (repeatable; default both)")  # fmt: skip
    parser.add_argument("--processes", type=int, action="append",
                        help="items 1 and 4 on MariaDB also with serve --processes N"
                             " (repeatable; default 2; 1: one process only)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not set(args.items) <= set(range(1, 8)):
        parser.error("items are numbers from 1 to 7")
    backends = args.backend or ["mysql", "sqlite"]
    several = sorted({n for n in args.processes or [2] if n > 1})

    def with_processes(
        bench: Callable[[str, bool, int], list[Figure]],
    ) -> Callable[[str, bool], list[Figure]]:
        """One process, then (MariaDB) each of --processes."""

        def run(backend: str, quick: bool) -> list[Figure]:
            figures = bench(backend, quick, 1)
            for processes in several if backend == "mysql" else []:
                figures += bench(backend, quick, processes)
            return figures

        return run

    def item_1(backend: str, quick: bool) -> list[Figure]:
        return calls(backend, quick, [1, *several] if backend == "mysql" else [1])

    per_backend: dict[int, Callable[[str, bool], list[Figure]]] = {
        1: item_1, 2: create.measure, 3: create.measure,
        4: with_processes(drain.measure), 5: latency.measure,
    }  # fmt: skip
    figures: list[Figure] = []
    done: set[object] = set()
    for item in sorted(set(args.items or range(1, 8))):
        start = time.monotonic()
        if item in per_backend and all((per_backend[item], b) in done for b in backends):
            print(f"--- item {item}: measured by the run before (bench.create)", flush=True)
            continue  # items 2 and 3 come from one run
        print(f"--- item {item}", flush=True)
        if item in per_backend:
            bench = per_backend[item]
            for backend in backends:
                done.add((bench, backend))
                figures += bench(backend, args.quick)
        elif item == 6:
            figures += memory.measure(args.quick)
        else:
            figures += replicas.measure(args.quick)
        print(f"--- item {item}: {time.monotonic() - start:.0f} s", flush=True)
    figures = [f for f in figures if not args.items or f.item in args.items]
    print(("\nQUICK RUN: smoke only, not a measurement\n" if args.quick else "\n") + table(figures))
    if args.json:
        save(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
