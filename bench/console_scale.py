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
import uuid
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

from taskconsole.models import TaskRecord, TaskStatus  # noqa: E402

NAMES = ["app.tasks.add", "app.tasks.crunch_numbers", "pages.tasks.fetch", "imports.tasks.run"]
STATUSES = [TaskStatus.SUCCESS] * 8 + [TaskStatus.FAILURE, TaskStatus.QUEUED]


def fill(rows: int, owner_ids: list[int]) -> None:
    have = TaskRecord.objects.count()
    if have >= rows:
        return
    start = timezone.now() - timedelta(days=30)
    table = TaskRecord._meta.db_table
    columns = (
        "task_id, name, status, args, kwargs, redacted, origin, owner_id, origin_detail, queue, "
        "worker, created_at, finished_at, result, exception, traceback, retries, parent_id, "
        "root_id, group_id, progress_message"
    )
    marks = ", ".join(["%s"] * 21)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
    batch = 20_000
    for first in range(have, rows, batch):
        values = []
        for i in range(first, min(first + batch, rows)):
            created = start + timedelta(seconds=i * 2.5)
            values.append(
                (
                    str(uuid.uuid4()),
                    NAMES[i % 4],
                    STATUSES[i % 10],
                    "[]",
                    '{"x": 1}',
                    False,
                    "console",
                    owner_ids[i % len(owner_ids)],
                    "",
                    "default",
                    "w1@host",
                    created,
                    created + timedelta(seconds=2),
                    "3",
                    "",
                    "",
                    0,
                    "",
                    "",
                    "",
                    "",
                )
            )
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, values)
        print(f"  {min(first + batch, rows):>9,} rows", end="\r", flush=True)
    print()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}")
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def timed(client: Client, url: str, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


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
