"""The partial indexes of task records: the console's lookups use them, on either database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from taskconsole import queries
from taskconsole.models import Origin, TaskRecord, TaskStatus

pytestmark = [pytest.mark.database, pytest.mark.django_db]


def test_relations_and_recent_finishes_are_looked_up_by_their_partial_indexes() -> None:
    root = TaskRecord.objects.create(
        task_id="root", name="n", origin=Origin.CODE, status=TaskStatus.SUCCESS, group_id="g"
    )
    TaskRecord.objects.create(
        task_id="child", name="n", origin=Origin.TASK, parent_id="root", group_id="g"
    )
    TaskRecord.objects.create(task_id="retry", name="n", origin=Origin.CODE, retry_of=root)
    TaskRecord.objects.create(task_id="plain", name="n", origin=Origin.CODE)
    relations = queries.task_relations(root)
    assert [r.task_id for r in relations["children"]] == ["child"]
    assert [r.task_id for r in relations["group"]] == ["child"]
    assert [r.task_id for r in relations["retried_as"]] == ["retry"]
    if connection.vendor == "postgresql":
        # With a few rows PostgreSQL scans the table, whatever the indexes.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
    since = timezone.now() - timedelta(hours=1)
    for queryset, index in [
        (queries.children(root), "tc_parent_only"),
        (queries.group_members(root), "tc_group_only"),
        (root.retried_as.all(), "tc_retry_of"),
        (TaskRecord.objects.filter(finished_at__gte=since).order_by(), "tc_finished_only"),
    ]:
        plan = queryset.explain()
        assert index in plan, plan
