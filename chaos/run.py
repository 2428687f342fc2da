"""The chaos suite: break the stack on purpose and count, from a ledger, what was lost or doubled.

    .venv/bin/python chaos/run.py [--tasks 1000] [--only sigkill,inject,sentinel]

Runs against the services on localhost: Redis (127.0.0.1:6379, database 13), RabbitMQ
(amqp://guest:guest@127.0.0.1:5672//) and PostgreSQL (postgres://postgres@127.0.0.1:5432,
database myproject_chaos) when they answer, SQLite otherwise. Each run uses its own queue name,
so nothing else on those brokers is touched. Every task writes (task id, attempt, worker pid)
to reliability's LedgerEntry table at start and marks it done at the end, so:

- lost: tasks with no finished execution;
- ran twice: tasks started more than once (the promise for a non-idempotent task: 0);
- recovery s: seconds from the worker's SIGKILL until a task that was running then runs again.

Scenarios live in the modules of this package, each with a SCENARIOS mapping of name to a
function taking a chaos.common.Context and returning table rows. Names listed in a module's
BACKGROUND set run in a thread beside the others (the long beat scenarios), so the suite's wall
time is the longest of them, not the sum.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chaos.common import (
    AMQP_URL,
    BASE_DIR,
    REDIS_URL,
    Context,
    choose_database,
    listening,
    setup_django,
)

MODULES = ["chaos.delivery", "chaos.beat", "chaos.database", "chaos.security", "chaos.health"]

COLUMNS = [
    "scenario",
    "broker",
    "policy",
    "tasks",
    "lost",
    "ran twice",
    "recovery s",
    "executed",
    "logged",
    "published",
    "errors",
    "stores",
    "refused",
    "dead-lettered",
    "note",
]


def load() -> tuple[dict, set]:
    scenarios: dict = {}
    background: set = set()
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        scenarios.update(module.SCENARIOS)
        background |= set(getattr(module, "BACKGROUND", ()))
    return scenarios, background


def table(rows: list[dict]) -> list[str]:
    columns = [c for c in COLUMNS if any(c in row for row in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return lines


def run_one(name: str, function, ctx: Context, rows: list[dict]) -> None:
    from django.db import connections

    started = time.monotonic()
    print(f"== {name}: started", flush=True)
    try:
        result = function(ctx)
    except Exception as exc:
        traceback.print_exc()
        # The table outlives the console: it says what went wrong, not only that it did.
        reason = (str(exc).splitlines() or [""])[0][:200].replace("|", "\\|")
        note = f"FAILED to run: {type(exc).__name__}: {reason} (traceback in the run's output)"
        result = [{"scenario": name, "note": note}]
    finally:
        connections.close_all()
    rows.extend(result)
    print(f"== {name}: {time.monotonic() - started:.0f} s", flush=True)
    for row in result:
        print(f"   {row}", flush=True)


def main() -> None:
    scenarios, background = load()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument(
        "--only", default=",".join(scenarios), help=f"any of: {', '.join(scenarios)}"
    )
    args = parser.parse_args()
    only = [name for name in args.only.split(",") if name]
    unknown = [name for name in only if name not in scenarios]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(scenarios)}")
    tmp = BASE_DIR / "chaos" / "runs" / time.strftime("%Y%m%d-%H%M%S")
    tmp.mkdir(parents=True, exist_ok=True)
    database = choose_database(tmp)
    setup_django(database)
    print(f"database: {database.split('@')[-1]}; logs in {tmp}", flush=True)
    brokers = []
    rows: list[dict] = []
    for name, url, port in (("Redis", REDIS_URL, 6379), ("RabbitMQ", AMQP_URL, 5672)):
        if listening("127.0.0.1", port):
            brokers.append((name, url))
        else:
            rows.append({"scenario": "all", "broker": name, "note": "not reachable: skipped"})
    ctx = Context(brokers=brokers, tmp=tmp, tasks=args.tasks, database_url=database)
    started = time.monotonic()
    threads = []
    background_rows: dict[str, list[dict]] = {}
    for name in only:
        if name in background:
            background_rows[name] = []
            thread = threading.Thread(
                target=run_one, args=(name, scenarios[name], ctx, background_rows[name])
            )
            thread.start()
            threads.append(thread)
    for name in only:
        if name not in background:
            run_one(name, scenarios[name], ctx, rows)
    for thread in threads:
        thread.join()
    for name in only:
        rows.extend(background_rows.get(name, []))
    lines = table(rows)
    elapsed = time.monotonic() - started
    print()
    print("\n".join(lines))
    print(f"\nchaos suite wall time: {elapsed / 60:.1f} min")
    report = [
        "# Chaos suite results",
        "",
        f"Written by `python chaos/run.py` (`make chaos`) on {time.strftime('%Y-%m-%d')}; "
        f"{os.cpu_count()} CPUs; database {database.split('@')[-1]}; brokers "
        f"{', '.join(name for name, _url in brokers) or 'none'}; wall time {elapsed / 60:.1f} min.",
        "",
        *lines,
        "",
    ]
    (tmp / "RESULTS.md").write_text("\n".join(report))
    if set(only) == set(scenarios):
        # The whole suite: the table the README quotes.
        (BASE_DIR / "chaos" / "RESULTS.md").write_text("\n".join(report))


if __name__ == "__main__":
    main()
