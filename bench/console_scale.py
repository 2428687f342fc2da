"""How the task console's list, detail and status API behave with 1,000,000 stored tasks.

    DATABASE_URL=sqlite:////tmp/console_bench.sqlite3 .venv/bin/python bench/console_scale.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/console_bench \
        .venv/bin/python bench/console_scale.py

Fills the (dedicated!) database once, then times each request through Django's test client,
so URL routing, middleware, auth, the query and the template or JSON are all included.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/console_bench.sqlite3")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.stats import pct  # noqa: E402
from taskconsole.models import TaskRecord, TaskStatus  # noqa: E402

NAMES = ["app.tasks.add", "app.tasks.crunch_numbers", "pages.tasks.fetch", "imports.tasks.run"]
STATUSES = [TaskStatus.SUCCESS] * 8 + [TaskStatus.FAILURE, TaskStatus.QUEUED]


def _choice(values: list, modulo_of: str = "i") -> str:
    """A SQL CASE picking values[i % len(values)]: constants only, so inlining them is safe."""

    def literal(value) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, int):
            return str(value)
        return "'" + str(value).replace("'", "''") + "'"

    arms = " ".join(f"WHEN {n} THEN {literal(v)}" for n, v in enumerate(values))
    return f"(CASE {modulo_of} % {len(values)} {arms} END)"


def generate(table: str, columns: dict[str, str], first: int, last: int, start: float) -> None:
    """Insert rows first..last-1 with every value computed by the database itself.

    `columns` maps a column to an SQL expression of `i` (the row number) and the helpers
    {uuid}, {at(seconds)}: a million rows take seconds instead of a Python loop's minutes.
    """
    vendor = connection.vendor
    if vendor == "sqlite":
        uid = (
            "(substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a' "
            "|| substr(h, 18, 3) || '-' || substr(h, 21, 12))"
        )

        def at(offset: str) -> str:
            return f"strftime('%Y-%m-%d %H:%M:%f', {start} + {offset}, 'unixepoch')"

        source = (
            f"(WITH RECURSIVE n(i) AS (SELECT {first} UNION ALL SELECT i + 1 FROM n "
            f"WHERE i + 1 < {last}) SELECT i, lower(hex(randomblob(16))) AS h FROM n) AS g"
        )
    elif vendor == "postgresql":
        uid = "gen_random_uuid()::text"

        def at(offset: str) -> str:
            return f"to_timestamp({start} + {offset})"

        source = f"generate_series({first}, {last - 1}) AS g(i)"
    else:
        raise SystemExit(f"bench: no bulk fill for {vendor}")
    names = ", ".join(columns)
    values = ", ".join(
        expression.replace("{uuid}", uid)
        .replace("{at}", at("i * 2.5"))
        .replace("{at+2}", at("i * 2.5 + 2"))
        for expression in columns.values()
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({names}) SELECT {values} FROM {source}")


def fill(rows: int, owner_ids: list[int]) -> None:
    have = TaskRecord.objects.count()
    if have >= rows:
        return
    start = (timezone.now() - timedelta(days=30)).timestamp()
    columns = {
        "task_id": "{uuid}",
        "name": _choice(NAMES),
        "status": _choice([str(s) for s in STATUSES]),
        "args": "'[]'",
        "kwargs": "'{\"x\": 1}'",
        "redacted": _choice([False]),
        "origin": "'console'",
        "owner_id": _choice(owner_ids),
        "origin_detail": "''",
        "queue": "'default'",
        "worker": "'w1@host'",
        "created_at": "{at}",
        "finished_at": "{at+2}",
        "result": "'3'",
        "exception": "''",
        "traceback": "''",
        "retries": "0",
        "parent_id": "''",
        "root_id": "''",
        "group_id": "''",
        "progress_message": "''",
    }
    generate(TaskRecord._meta.db_table, columns, have, rows, start)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def timed(client: Client, url: str, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return statistics.median(times), pct(times, 95)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    options = parser.parse_args()
    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    User = get_user_model()
    staff, _ = User.objects.get_or_create(username="bench-staff", defaults={"is_superuser": True})
    people = [User.objects.get_or_create(username=f"bench-{i}")[0] for i in range(20)]
    fill(options.rows, [p.pk for p in people])
    someone = people[3]
    from django.contrib.auth.models import Permission

    someone.user_permissions.add(Permission.objects.get(codename="view_taskrecord"))
    admin, user = Client(), Client()
    admin.force_login(staff)
    user.force_login(someone)
    total = TaskRecord.objects.order_by("-id").values_list("id", flat=True).first()
    deep = total - options.rows // 2
    sample = TaskRecord.objects.filter(id=deep).values_list("task_id", flat=True).first()
    cases = [
        ("list page, all tasks (staff)", admin, "/console/"),
        ("list page, halfway down (cursor)", admin, f"/console/?cursor={deep}"),
        ("list page, status=FAILURE", admin, "/console/?status=FAILURE"),
        ("list page, name filter", admin, "/console/?name=pages.tasks.fetch"),
        ("list page, own tasks (user)", user, "/console/"),
        ("live fragment of the list", admin, "/console/?fragment=1"),
        ("detail page", admin, f"/console/tasks/{sample}/"),
        ("status API, one task", admin, f"/console/api/tasks/{sample}/"),
        ("list API, 50 tasks", admin, "/console/api/tasks/"),
        (
            "list API, status=QUEUED, halfway",
            admin,
            f"/console/api/tasks/?status=QUEUED&cursor={deep}",
        ),
    ]
    print(f"{connection.vendor}, {TaskRecord.objects.order_by().count():,} task records")
    print(f"{'request':<40} {'p50 ms':>8} {'p95 ms':>8}")
    for label, client, url in cases:
        timed(client, url, 2)  # warm caches
        p50, p95 = timed(client, url, options.runs)
        print(f"{label:<40} {p50:>8.1f} {p95:>8.1f}")


if __name__ == "__main__":
    main()
