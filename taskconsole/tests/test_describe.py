from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from taskconsole.describe import crontab_next_runs, describe_crontab, describe_interval

SH = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("fields", "en", "zh"),
    [
        (("*", "*", "*", "*", "*"), "Every minute", "每分钟"),
        (("0", "0", "*", "*", "*"), "At 00:00, every day", "每天 00:00"),
        (("30", "7", "1", "*", "*"), "At 07:30, on Monday", "每周一 07:30"),
        (("*/15", "*", "*", "*", "*"), "Every 15 minutes", "每15分钟"),
        (("0", "*/3", "*", "*", "*"), "At minute 0 of every 3th hour", "每3小时的第0分"),
        (("*", "*", "sun", "*", "*"), "Every minute, on Sunday", "每周日 每分钟"),
        (("0", "0", "*", "2", "*"), "At 00:00, on day 2 of the month", "每月2日 00:00"),
        (
            ("0", "0", "*", "11", "5"),
            "At 00:00, on day 11 of the month, in May",
            "每年5月11日 00:00",
        ),
        (("0", "0", "1-5", "*", "*"), "At 00:00, on Monday through Friday", "每周一至周五 00:00"),
    ],
)
def test_crontab_in_words(fields, en, zh) -> None:
    assert describe_crontab(*fields, language="en") == en
    assert describe_crontab(*fields, language="zh-hans") == zh


def test_intervals_in_words() -> None:
    assert describe_interval(30, "en") == "Every 30 seconds"
    assert describe_interval(3600, "en") == "Every hour"
    assert describe_interval(3600, "zh-hans") == "每小时"
    assert describe_interval(7200, "zh-hans") == "每2小时"


def test_crontab_next_runs_in_its_zone() -> None:
    after = datetime(2024, 1, 1, 0, 0, tzinfo=ZoneInfo("UTC"))  # a Monday, 08:00 in Shanghai
    runs = crontab_next_runs("30", "7", "1", "*", "*", SH, after, count=2)
    assert runs == [datetime(2024, 1, 8, 7, 30, tzinfo=SH), datetime(2024, 1, 15, 7, 30, tzinfo=SH)]
    assert runs[0].astimezone(ZoneInfo("UTC")).hour == 23
    yearly = crontab_next_runs("0", "0", "*", "11", "5", SH, after, count=1)
    assert yearly == [datetime(2024, 5, 11, 0, 0, tzinfo=SH)]


@pytest.mark.django_db
def test_an_interval_task_that_never_ran_counts_from_its_last_change() -> None:
    from datetime import timedelta

    from django.utils import timezone
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from taskconsole.describe import next_runs

    hourly = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    task = PeriodicTask.objects.create(name="hourly", task="app.tasks.add", interval=hourly)
    changed = task.date_changed
    later = changed + timedelta(minutes=10)
    # As django-celery-beat's entry counts it: an hour after the change, wherever "now" is.
    assert next_runs(task, later, count=2) == [
        changed + timedelta(hours=1),
        changed + timedelta(hours=2),
    ]
    task.start_time = changed + timedelta(days=1)
    assert next_runs(task, later, count=1) == [task.start_time]
    task.start_time = None
    task.last_run_at = later
    assert next_runs(task, later, count=1) == [later + timedelta(hours=1)]
    assert next_runs(task, timezone.now() + timedelta(days=3), count=1)[0] > later
