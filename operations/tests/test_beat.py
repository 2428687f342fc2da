"""Beat with the DatabaseScheduler: settings schedules, admin-style edits, heartbeat."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_results.models import TaskResult

from operations.models import Heartbeat
from operations.testing import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.mark.smoke
def test_beat_installs_settings_schedules_and_picks_up_new_ones(
    celery_worker, start_worker, start_beat, subprocess_env
) -> None:
    beat = start_beat()
    wait_for(lambda: PeriodicTask.objects.filter(name="add-every-monday-morning").exists(), 30)

    every_30s = PeriodicTask.objects.get(name="add-every-30s")
    assert every_30s.task == "app.tasks.add"
    assert (every_30s.interval.every, every_30s.interval.period) == (30, "seconds")
    assert every_30s.args == "[3, 8]"
    hourly = PeriodicTask.objects.get(name="add-every-day")
    assert (hourly.interval.every, hourly.interval.period) == (3600, "seconds")
    monday = PeriodicTask.objects.get(name="add-every-monday-morning").crontab
    assert (monday.minute, monday.hour, monday.day_of_week) == ("30", "7", "1")

    # Added while beat runs, as a person would in the admin: beat must notice without a restart.
    every_second, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.create(
        name="ping-every-second", task="app.tasks.ping", interval=every_second
    )
    wait_for(
        lambda: (
            TaskResult.objects.filter(
                periodic_task_name="ping-every-second", status="SUCCESS"
            ).count()
            >= 2
        ),
        timeout=60,
    )
    row = TaskResult.objects.filter(
        periodic_task_name="ping-every-second", status="SUCCESS"
    ).first()
    assert row.task_name == "app.tasks.ping"
    assert row.result == '"pong"'
    assert "Sending due task ping-every-second" in beat.output

    # With beat, a worker for every queue and the broker up, the tutorial's check passes.
    wait_for(lambda: Heartbeat.objects.filter(name="beat").exists(), timeout=30)
    start_worker(queues="heavy_tasks", concurrency=1, name="heavy")
    check = celery_check(subprocess_env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Beat is running" in check.stdout
    assert "app.tasks.add" in check.stdout
    assert "Every configured queue has a worker: default, heavy_tasks" in check.stdout

    # Stopped (Ctrl-C), beat says so at once: not "running" until its heartbeat is a minute old.
    beat.stop()
    check = celery_check(subprocess_env)
    assert check.returncode != 0
    assert "Beat stopped" in check.stdout, check.stdout
    assert "Not working: beat" in check.stderr


def celery_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "manage.py", "celery_check"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_a_settings_entry_is_written_again_only_when_it_changed() -> None:
    from celery import current_app

    from operations.beat import ModelEntry

    entry = {"task": "app.tasks.add", "schedule": 3600.0, "args": (1, 2)}
    ModelEntry.from_entry("hourly-add", app=current_app, **entry)
    first = PeriodicTask.objects.get(name="hourly-add")
    # A beat restart: the same entry again. Its row, and so its date_changed, stay as they were
    # (an interval task that never ran counts its first run from date_changed).
    ModelEntry.from_entry("hourly-add", app=current_app, **entry)
    assert PeriodicTask.objects.get(name="hourly-add").date_changed == first.date_changed
    ModelEntry.from_entry("hourly-add", app=current_app, **{**entry, "args": (5, 6)})
    changed = PeriodicTask.objects.get(name="hourly-add")
    assert changed.args == "[5, 6]"
    assert changed.date_changed > first.date_changed


def test_beat_says_in_one_line_that_the_broker_went_away_and_goes_on(start_beat, tmp_path) -> None:
    from operations import embedded_redis

    port = embedded_redis.free_port()
    broker = embedded_redis.start(
        port, tmp_path / "redis", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        every_second, _ = IntervalSchedule.objects.get_or_create(
            every=1, period=IntervalSchedule.SECONDS
        )
        PeriodicTask.objects.create(name="ping-away", task="app.tasks.ping", interval=every_second)
        beat = start_beat({"CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0"})
        beat.wait_for_output("Sending due task ping-away", 60)
    finally:
        broker.terminate()
        broker.wait(10)
    not_sent = "beat: ping-away was not sent: the task broker did not answer"
    wait_for(lambda: beat.output.count(not_sent) >= 2, timeout=60)
    # Celery's own report of a failed send is a SchedulingError with two stack traces.
    assert "Message Error" not in beat.output
    assert "Traceback" not in beat.output
    assert beat.process.poll() is None
