"""Run the product's beat (DatabaseScheduler) and report its CPU time and queries to a file.

    python bench/beat_runner.py STATS_FILE

Every second the file gets one JSON line: wall time, CPU seconds used, queries executed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")

import django

django.setup()

from django.db.backends.signals import connection_created  # noqa: E402

queries = 0


def _count(execute, sql, params, many, context):
    global queries
    queries += 1
    return execute(sql, params, many, context)


def _instrument(sender, connection, **kwargs) -> None:
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


connection_created.connect(_instrument)


def _report(path: str) -> None:
    with open(path, "a") as out:
        while True:
            times = os.times()
            out.write(
                json.dumps({"t": time.time(), "cpu": times.user + times.system, "q": queries})
                + "\n"
            )
            out.flush()
            time.sleep(1)


def main() -> None:
    threading.Thread(target=_report, args=(sys.argv[1],), daemon=True).start()
    from myproject.celery import app

    app.Beat(
        loglevel="INFO",
        scheduler="operations.beat:DatabaseScheduler",
        pidfile=None,
    ).run()


if __name__ == "__main__":
    main()
