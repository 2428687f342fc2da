from __future__ import annotations

import json
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings
from django_celery_beat.models import (
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
)

from maintenance.schedules import SCHEDULES, Crontab, Interval, Schedule, sync_schedules
from myproject.celery import app as celery_app

pytestmark = pytest.mark.django_db


def snapshot() -> dict:
    return {
        "tasks": list(PeriodicTask.objects.order_by("name").values()),
        "intervals": IntervalSchedule.objects.count(),
        "crontabs": CrontabSchedule.objects.count(),
        "last_update": PeriodicTasks.last_change(),
    }


def test_sync_writes_every_schedule_defined_in_code() -> None:
    report = sync_schedules()
    assert report.created == [schedule.name for schedule in SCHEDULES]

    clear = PeriodicTask.objects.get(name="maintenance.clear-expired")
    assert clear.task == "maintenance.tasks.clear_expired"
    assert (clear.interval.every, clear.interval.period) == (1, "hours")
    assert clear.crontab is None
    assert clear.enabled
    assert clear.description
    assert json.loads(clear.args) == []
    assert json.loads(clear.kwargs) == {}

    backup = PeriodicTask.objects.get(name="maintenance.backup-database")
    assert backup.task == "maintenance.tasks.backup_database"
    assert (backup.crontab.minute, backup.crontab.hour) == ("0", "3")
    assert str(backup.crontab.timezone) == settings.TIME_ZONE
    assert backup.interval is None

    prune = PeriodicTask.objects.get(name="maintenance.prune-task-results")
    assert (prune.crontab.minute, prune.crontab.hour) == ("30", "4")
    assert str(prune.crontab.timezone) == settings.TIME_ZONE


def test_a_second_sync_changes_nothing() -> None:
    sync_schedules()
    before = snapshot()
    report = sync_schedules()
    assert not report.changed
    assert report.unchanged == [schedule.name for schedule in SCHEDULES]
    assert snapshot() == before


def test_a_schedule_disabled_in_the_admin_stays_disabled_until_reset() -> None:
    sync_schedules()
    task = PeriodicTask.objects.get(name="maintenance.backup-database")
    task.enabled = False
    task.save()

    report = sync_schedules()
    assert not report.changed
    assert not PeriodicTask.objects.get(name="maintenance.backup-database").enabled

    report = sync_schedules(reset=True)
    assert report.updated == {"maintenance.backup-database": ["enabled"]}
    assert PeriodicTask.objects.get(name="maintenance.backup-database").enabled


def test_a_schedule_enabled_in_the_admin_stays_enabled() -> None:
    schedules = (
        Schedule(
            name="maintenance.off-by-default",
            task="maintenance.tasks.prune_results",
            schedule=Interval(every=7, period="days"),
            enabled=False,
        ),
    )
    sync_schedules(schedules)
    task = PeriodicTask.objects.get(name="maintenance.off-by-default")
    assert not task.enabled
    task.enabled = True
    task.save()
    assert not sync_schedules(schedules).changed
    assert PeriodicTask.objects.get(name="maintenance.off-by-default").enabled


def test_fields_the_code_owns_are_put_back_and_the_last_run_forgotten(django_user_model) -> None:
    sync_schedules()
    task = PeriodicTask.objects.get(name="maintenance.backup-database")
    task.crontab = CrontabSchedule.objects.create(minute="15", hour="5", timezone="UTC")
    task.args = json.dumps([1, 2])
    task.description = "edited in the admin"
    task.last_run_at = task.date_changed
    task.save()

    report = sync_schedules()
    assert sorted(report.updated["maintenance.backup-database"]) == [
        "args",
        "crontab",
        "description",
    ]
    task.refresh_from_db()
    assert (task.crontab.minute, task.crontab.hour) == ("0", "3")
    assert json.loads(task.args) == []
    assert task.description != "edited in the admin"
    assert task.last_run_at is None


def test_reformatted_json_is_not_a_change() -> None:
    sync_schedules()
    PeriodicTask.objects.filter(name="maintenance.clear-expired").update(args="[ ]", kwargs=" {}")
    assert not sync_schedules().changed


@override_settings(TIME_ZONE="UTC")
def test_crontabs_follow_the_time_zone_setting() -> None:
    with override_settings(TIME_ZONE="Asia/Shanghai"):
        sync_schedules()
    report = sync_schedules()
    assert report.updated["maintenance.backup-database"] == ["crontab"]
    assert (
        str(PeriodicTask.objects.get(name="maintenance.backup-database").crontab.timezone) == "UTC"
    )


def test_schedules_removed_from_code_are_deleted_and_others_left_alone() -> None:
    every_day = IntervalSchedule.objects.create(every=1, period="days")
    PeriodicTask.objects.create(name="maintenance.retired-job", task="x.y", interval=every_day)
    PeriodicTask.objects.create(name="added-in-the-admin", task="x.y", interval=every_day)

    report = sync_schedules()
    assert report.deleted == ["maintenance.retired-job"]
    assert PeriodicTask.objects.filter(name="added-in-the-admin").exists()
    assert not PeriodicTask.objects.filter(name="maintenance.retired-job").exists()


def test_duplicate_schedule_rows_made_in_the_admin_do_not_break_the_sync() -> None:
    IntervalSchedule.objects.create(every=1, period="hours")
    IntervalSchedule.objects.create(every=1, period="hours")
    for _ in range(2):
        CrontabSchedule.objects.create(minute="0", hour="3", timezone=settings.TIME_ZONE)
    sync_schedules()
    assert not sync_schedules().changed


def test_command_is_silent_at_verbosity_0_and_reports_otherwise() -> None:
    out = StringIO()
    call_command("sync_schedules", verbosity=0, stdout=out)
    assert out.getvalue() == ""
    assert PeriodicTask.objects.filter(name__startswith="maintenance.").count() == len(SCHEDULES)

    PeriodicTask.objects.filter(name="maintenance.prune-task-results").update(enabled=False)
    out = StringIO()
    call_command("sync_schedules", stdout=out)
    assert "0 created, 0 updated, 0 deleted, 3 unchanged" in out.getvalue()

    out = StringIO()
    call_command("sync_schedules", "--reset", stdout=out)
    assert "Updated maintenance.prune-task-results: enabled" in out.getvalue()
    assert "0 created, 1 updated, 0 deleted, 2 unchanged" in out.getvalue()


def test_command_lists_what_it_created() -> None:
    out = StringIO()
    call_command("sync_schedules", stdout=out)
    for schedule in SCHEDULES:
        assert f"Created {schedule.name}" in out.getvalue()


def test_every_schedule_names_a_registered_task() -> None:
    import maintenance.tasks  # noqa: F401  (registers them, as the worker's autodiscovery does)

    for schedule in SCHEDULES:
        assert schedule.task in celery_app.tasks


def test_schedule_names_carry_the_prefix_sync_owns() -> None:
    with pytest.raises(ValueError, match=r"maintenance\."):
        Schedule(name="backup", task="x.y", schedule=Crontab())


def test_synced_schedules_are_listed_and_editable_in_the_admin(admin_client: Client) -> None:
    sync_schedules()
    changelist = admin_client.get("/admin/django_celery_beat/periodictask/")
    for schedule in SCHEDULES:
        assert schedule.name in changelist.content.decode()
    task = PeriodicTask.objects.get(name="maintenance.backup-database")
    change = admin_client.get(f"/admin/django_celery_beat/periodictask/{task.pk}/change/")
    assert change.status_code == 200
    assert 'name="enabled"' in change.content.decode()
