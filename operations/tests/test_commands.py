from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from operations.celery_plugin import reorder
from operations.flower_cli import translate


@pytest.mark.django_db
def test_reset_beat_schedule_clears_last_run_and_marks_the_change() -> None:
    every, _ = IntervalSchedule.objects.get_or_create(every=10, period=IntervalSchedule.SECONDS)
    for name in ("a", "b"):
        PeriodicTask.objects.create(
            name=name, task="app.tasks.ping", interval=every, last_run_at=timezone.now()
        )
    before = PeriodicTasks.last_change()
    out = StringIO()
    call_command("reset_beat_schedule", stdout=out)
    assert not PeriodicTask.objects.filter(last_run_at__isnull=False).exists()
    assert PeriodicTasks.last_change() > before
    assert "Cleared last_run_at on 2 periodic task(s)" in out.getvalue()


def test_flower_command_of_the_tutorial_becomes_celery_flower() -> None:
    assert translate(["-A", "myproject", "--port=5555"]) == [
        "celery",
        "-A",
        "myproject",
        "flower",
        "--port=5555",
    ]
    assert translate(["--app=myproject", "--address=127.0.0.1"]) == [
        "celery",
        "--app=myproject",
        "flower",
        "--address=127.0.0.1",
    ]


def test_celery_flower_in_the_tutorials_order_is_read_in_celerys() -> None:
    tutorial = ["celery", "flower", "-A", "myproject", "--address=127.0.0.1", "--port=5555"]
    assert reorder(tutorial) == [
        "celery",
        "-A",
        "myproject",
        "flower",
        "--address=127.0.0.1",
        "--port=5555",
    ]
    # Celery's own order, and other commands, are left as they are: a queue or an app named
    # flower is not the sub-command.
    for argv in (
        ["celery", "-A", "myproject", "flower", "--port=5555"],
        ["celery", "-A", "myproject", "worker", "-l", "info"],
        ["celery", "-A", "myproject", "worker", "-Q", "flower", "-b", "redis://h/0"],
        ["celery", "-A", "flower", "worker"],
    ):
        assert reorder(argv) == argv
