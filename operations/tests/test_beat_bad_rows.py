"""Beat skips a periodic task row it cannot use, says so once, and runs everything else.

django-celery-beat crashed beat on such rows (an OverflowError from an interval of
9223372036854775807 days, a TypeError from headers=[1]) at every start, and `make run` stopped
the whole stack with it, until someone disabled the row by hand (operations/beat.py).
"""

from __future__ import annotations

import logging
import time

import pytest
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from myproject.celery import app as celery_app
from operations import beat
from operations.testing import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]

SKIPPED = "is skipped: "


@pytest.fixture(autouse=True)
def _nothing_said_yet():
    beat.BAD_ROWS.clear()
    yield
    beat.BAD_ROWS.clear()


def make_rows() -> dict[str, str]:
    """A good periodic task (every second) and one of each kind of bad row, all enabled; the
    reason each bad one's log line gives."""
    every_second = IntervalSchedule.objects.create(every=1, period="seconds")
    PeriodicTask.objects.create(name="good", task="app.tasks.ping", interval=every_second)
    bad_rows = {
        "huge-interval": (
            {"interval": IntervalSchedule.objects.create(every=2_000_000_000, period="days")},
            "its schedule cannot be used (OverflowError",
        ),
        "overflowing-interval": (
            # timedelta takes it; the last run plus it is past the year 9999.
            {"interval": IntervalSchedule.objects.create(every=999999999, period="days")},
            "its next run cannot be computed (OverflowError",
        ),
        "list-headers": (
            {"interval": every_second, "headers": "[1]"},
            "its headers must be a JSON object, not '[1]'",
        ),
        "list-kwargs": (
            {"interval": every_second, "kwargs": "[1]"},
            "its kwargs must be a JSON object, not '[1]'",
        ),
        "object-args": (
            {"interval": every_second, "args": '{"x": 1}'},
            "its args must be a JSON list, not '{\"x\": 1}'",
        ),
        "broken-args": ({"interval": every_second, "args": "[1,"}, "its args is not valid JSON"),
        "negative-hour": (
            {"crontab": CrontabSchedule.objects.create(minute="0", hour="-1", timezone="UTC")},
            "its schedule cannot be used (ParseException: negative numbers not supported",
        ),
        "never-runs": (
            {
                "crontab": CrontabSchedule.objects.create(
                    minute="0", hour="*", day_of_month="31", month_of_year="2", timezone="UTC"
                )
            },
            "its schedule cannot be used (ValueError: Invalid crontab: day_of_month '31' never",
        ),
    }
    for name, (fields, _) in bad_rows.items():
        # As the shell, a data migration or an older admin could write them: no validation.
        PeriodicTask.objects.create(name=name, task="app.tasks.ping", **fields)
    return {name: reason for name, (_, reason) in bad_rows.items()}


def skipped_lines(caplog, name: str) -> list[str]:
    start = f"beat: periodic task {name!r}"
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "operations.beat" and r.getMessage().startswith(start)
    ]


def tick_until(scheduler, predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        scheduler.tick()
        time.sleep(0.1)


def test_bad_rows_are_skipped_said_once_and_the_rest_is_sent(caplog, sent) -> None:
    caplog.set_level(logging.INFO, logger="operations.beat")
    reasons = make_rows()
    scheduler = beat.DatabaseScheduler(app=celery_app)
    try:
        good_sent = lambda: any(  # noqa: E731
            m["headers"].get("periodic_task_name") == "good" for m in sent
        )
        tick_until(scheduler, good_sent)
        # Reloads (a change elsewhere, beat's 5-minute full sync) and more ticks say nothing new.
        PeriodicTask.objects.filter(name="good").update(description="touched")
        from django_celery_beat.models import PeriodicTasks

        PeriodicTasks.update_changed()
        scheduler._last_timestamp = None  # the change is seen at the next tick
        for _ in range(5):
            scheduler.tick()
        scheduler._schedule = scheduler.all_as_schedule()

        for name, reason in reasons.items():
            lines = skipped_lines(caplog, name)
            assert len(lines) == 1, (name, lines)
            assert lines[0].startswith(f"beat: periodic task {name!r} {SKIPPED}{reason}"), lines
            assert lines[0].endswith(
                "The other periodic tasks run; this one runs once the row is fixed."
            )
            assert "\n" not in lines[0]
        assert {r.levelname for r in caplog.records if SKIPPED in r.getMessage()} == {"ERROR"}
        assert not [r for r in caplog.records if r.exc_info]  # no traceback
        # Skipped, not disabled behind anybody's back (django-celery-beat disables bad args).
        assert PeriodicTask.objects.filter(name__in=reasons, enabled=True).count() == len(reasons)
        sent_names = {m["headers"].get("periodic_task_name") for m in sent}
        assert not sent_names & set(reasons)
        assert "good" in scheduler.schedule
        assert not (set(scheduler.schedule) & (set(reasons) - {"overflowing-interval"}))

        # Changed to another bad value: said again, once.
        row = PeriodicTask.objects.get(name="list-headers")
        row.headers = '"text"'
        row.save()
        tick_until(scheduler, lambda: len(skipped_lines(caplog, "list-headers")) == 2)
        scheduler.tick()
        assert skipped_lines(caplog, "list-headers")[1].startswith(
            "beat: periodic task 'list-headers' is skipped: its headers must be a JSON object, "
            "not '\"text\"'"
        )
        # Fixed: scheduled and sent like any other.
        row.headers = '{"tenant": "a"}'
        row.save()
        tick_until(
            scheduler,
            lambda: any(m["headers"].get("periodic_task_name") == "list-headers" for m in sent),
        )
        fixed = next(m for m in sent if m["headers"].get("periodic_task_name") == "list-headers")
        assert fixed["headers"]["tenant"] == "a"
        assert len(skipped_lines(caplog, "list-headers")) == 2
    finally:
        scheduler.close()


def test_a_row_fixed_in_its_schedule_row_only_is_picked_up(caplog, sent) -> None:
    """Editing the interval row itself (not the task) is a change of the task's schedule."""
    caplog.set_level(logging.INFO, logger="operations.beat")
    huge = IntervalSchedule.objects.create(every=2_000_000_000, period="days")
    PeriodicTask.objects.create(name="huge", task="app.tasks.ping", interval=huge)
    scheduler = beat.DatabaseScheduler(app=celery_app)
    try:
        tick_until(scheduler, lambda: len(skipped_lines(caplog, "huge")) == 1)
        huge.every = 1
        huge.period = "seconds"
        huge.save()  # django-celery-beat marks the schedule changed
        tick_until(
            scheduler, lambda: any(m["headers"].get("periodic_task_name") == "huge" for m in sent)
        )
        assert len(skipped_lines(caplog, "huge")) == 1
    finally:
        scheduler.close()


@pytest.mark.integration
def test_a_real_beat_starts_and_runs_with_bad_rows(start_beat) -> None:
    """`celery -A myproject beat` with the bad rows in the table from the start: it keeps
    running, sends the good task, and says once about each bad row, across reloads."""
    reasons = make_rows()
    process = start_beat()
    try:
        process.wait_for_output("Sending due task good (app.tasks.ping)", 60)
        for name in reasons:
            said = f"beat: periodic task {name!r} {SKIPPED}"
            wait_for(lambda said=said: said in process.output, 30)
        changes = process.output.count("DatabaseScheduler: Schedule changed.")
        # A change elsewhere reloads the schedule: nothing is said again.
        from django_celery_beat.models import PeriodicTasks

        PeriodicTasks.update_changed()
        wait_for(lambda: process.output.count("DatabaseScheduler: Schedule changed.") > changes, 30)
        sends = process.output.count("Sending due task good")
        wait_for(lambda: process.output.count("Sending due task good") >= sends + 2, 30)
        assert process.process.poll() is None
        for name in reasons:
            assert process.output.count(f"beat: periodic task {name!r} {SKIPPED}") == 1, name
        assert "Traceback" not in process.output
    finally:
        process.stop()
        celery_app.control.purge()
