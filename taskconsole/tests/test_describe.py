from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab

from taskconsole.describe import crontab_next_runs, describe_crontab, describe_interval

SH = ZoneInfo("Asia/Shanghai")


def _fields(schedule: crontab) -> tuple[str, str, str, str, str]:
    """A Celery crontab's fields as django-celery-beat stores them (CrontabSchedule)."""
    return tuple(
        str(field)
        for field in (
            schedule._orig_minute,
            schedule._orig_hour,
            schedule._orig_day_of_week,
            schedule._orig_day_of_month,
            schedule._orig_month_of_year,
        )
    )


# The examples of Celery's periodic tasks guide (crontab schedules), which the tutorial follows.
TUTORIAL = [
    (crontab(), "Every minute", "每分钟"),
    (crontab(minute=0, hour=0), "At 00:00, every day", "每天 00:00"),
    (
        crontab(minute=0, hour="*/3"),
        "Every 3 hours from 00:00 through 21:00",
        "每天 00:00 至 21:00 每 3 小时一次",
    ),
    (
        crontab(minute=0, hour="0,3,6,9,12,15,18,21"),
        "Every 3 hours from 00:00 through 21:00",
        "每天 00:00 至 21:00 每 3 小时一次",
    ),
    (crontab(minute="*/15"), "Every 15 minutes", "每 15 分钟"),
    (crontab(day_of_week="sunday"), "Every minute, on Sundays", "每周日，每分钟"),
    (
        crontab(minute="*", hour="*", day_of_week="sun"),
        "Every minute, on Sundays",
        "每周日，每分钟",
    ),
    (
        crontab(minute="*/10", hour="3,17,22", day_of_week="thu,fri"),
        "Every 10 minutes during 03:00–03:59, 17:00–17:59 and 22:00–22:59, "
        "on Thursdays and Fridays",
        "每周四、周五 03:00–03:59、17:00–17:59、22:00–22:59，每 10 分钟一次",
    ),
    (
        crontab(minute=0, hour="*/2,*/3"),
        "Every 2 hours from 00:00 through 22:00 and every 3 hours from 00:00 through 21:00",
        "每天 00:00 至 22:00 每 2 小时一次，以及 00:00 至 21:00 每 3 小时一次",
    ),
    # Not "every 5 hours": after 20:00 the next run is at 00:00, 4 hours later.
    (
        crontab(minute=0, hour="*/5"),
        "Every 5 hours from 00:00 through 20:00",
        "每天 00:00 至 20:00 每 5 小时一次",
    ),
    (
        crontab(minute=0, hour="*/3,8-17"),
        "Every 3 hours from 00:00 through 21:00 and every hour from 08:00 through 17:00",
        "每天 00:00 至 21:00 每 3 小时一次，以及 08:00 至 17:00 每小时一次",
    ),
    (crontab(0, 0, day_of_month="2"), "At 00:00, on the 2nd of the month", "每月 2 日 00:00"),
    (
        crontab(0, 0, day_of_month="2-30/2"),
        "At 00:00, on the 2nd, 4th, 6th, …, 30th of the month",
        "每月 2、4、6……30 日 00:00",
    ),
    (
        crontab(0, 0, day_of_month="1-7,15-21"),
        "At 00:00, from the 1st through the 7th and from the 15th through the 21st of the month",
        "每月 1 日至 7 日、15 日至 21 日 00:00",
    ),
    (
        crontab(0, 0, day_of_month="11", month_of_year="5"),
        "At 00:00, on May 11",
        "每年 5 月 11 日 00:00",
    ),
    (
        crontab(0, 0, month_of_year="*/3"),
        "At 00:00, every day in January, April, July and October",
        "每年 1、4、7、10 月每天 00:00",
    ),
    (crontab(minute=30, hour=7, day_of_week=1), "At 07:30, on Mondays", "每周一 07:30"),
]


@pytest.mark.parametrize(("schedule", "en", "zh"), TUTORIAL)
def test_the_tutorials_crontabs_in_words(schedule, en, zh) -> None:
    fields = _fields(schedule)
    assert describe_crontab(*fields, language="en") == en
    assert describe_crontab(*fields, language="zh-hans") == zh


@pytest.mark.parametrize(
    ("fields", "en", "zh"),
    [
        (("0", "0", "1-5", "*", "*"), "At 00:00, on Monday through Friday", "每周一至周五 00:00"),
        (
            ("0", "0", "fri-mon", "*", "*"),
            "At 00:00, on Friday through Monday",
            "每周五至周一 00:00",
        ),
        (
            ("0", "0", "sat,sun", "*", "*"),
            "At 00:00, on Saturdays and Sundays",
            "每周六、周日 00:00",
        ),
        (("0", "*", "*", "*", "*"), "Every hour, on the hour", "每小时整点"),
        (("5", "*", "*", "*", "*"), "At minute 5 of every hour", "每小时第 5 分钟"),
        (("0,30", "*", "*", "*", "*"), "At minutes 0 and 30 of every hour", "每小时第 0、30 分钟"),
        # 7 does not divide the hour: from :56 the next run is at :00.
        (
            ("*/7", "*", "*", "*", "*"),
            "Every 7 minutes from minute 0 through 56 of every hour",
            "每小时第 0 至 56 分钟内每 7 分钟",
        ),
        (
            ("0-30/10", "*", "*", "*", "*"),
            "Every 10 minutes from minute 0 through 30 of every hour",
            "每小时第 0 至 30 分钟内每 10 分钟",
        ),
        (
            ("*/15", "8-17", "1-5", "*", "*"),
            "Every 15 minutes during 08:00–17:59, on Monday through Friday",
            "每周一至周五 08:00–17:59，每 15 分钟一次",
        ),
        (
            ("*/10", "*/3", "*", "*", "*"),
            "Every 10 minutes during hours 0, 3, 6, 9, 12, 15, 18 and 21",
            "每天 0、3、6、9、12、15、18、21 点这几个小时内，每 10 分钟一次",
        ),
        # Ranges past the end wrap round, as Celery reads them.
        (
            ("0", "22-2", "*", "*", "*"),
            "Every hour from 22:00 through 02:00",
            "每天 22:00 至 02:00 每小时一次",
        ),
        (
            ("0", "22-4/2", "*", "*", "*"),
            "Every 2 hours from 22:00 through 04:00",
            "每天 22:00 至 04:00 每 2 小时一次",
        ),
        (
            ("0", "6,8-17", "*", "*", "*"),
            "At 06:00 and every hour from 08:00 through 17:00",
            "每天 06:00，以及 08:00 至 17:00 每小时一次",
        ),
        (("0", "*/12", "*", "*", "*"), "At 00:00 and 12:00, every day", "每天 00:00、12:00"),
        (
            ("0,30", "9,17", "*", "*", "*"),
            "At 09:00, 09:30, 17:00 and 17:30, every day",
            "每天 09:00、09:30、17:00、17:30",
        ),
        (
            ("0", "0", "*", "*/3", "*"),
            "At 00:00, on the 1st, 4th, 7th, …, 31st of the month",
            "每月 1、4、7……31 日 00:00",
        ),
        (
            ("0", "0", "*", "1,2,3,11,12,13,21,22,23", "*"),
            "At 00:00, from the 1st through the 3rd, from the 11th through the 13th and from "
            "the 21st through the 23rd of the month",
            "每月 1 日至 3 日、11 日至 13 日、21 日至 23 日 00:00",
        ),
        (
            ("0", "0", "1", "1-7", "*"),
            "At 00:00, from the 1st through the 7th of the month, only on Mondays",
            "每月 1 日至 7 日（且为周一）00:00",
        ),
        (
            ("0", "0", "*", "1", "*/3"),
            "At 00:00, on the 1st of January, April, July and October",
            "每年 1、4、7、10 月的 1 日 00:00",
        ),
        (
            ("0", "0", "mon", "*", "jun-aug"),
            "At 00:00, on Mondays in June through August",
            "每年 6 月至 8 月的每周一 00:00",
        ),
        (
            ("*", "*", "*", "*", "nov-feb"),
            "Every minute, in November through February",
            "每年 11 月至 2 月，每分钟",
        ),
        # Fields that cover every value read as "every".
        (("0-59", "0-23", "0-6", "1-31", "1-12"), "Every minute", "每分钟"),
        # What Celery cannot read is shown as it is, not guessed at.
        (
            ("61", "*", "*", "*", "*"),
            "Minute 61, hour *, day of month *, month *, day of week *",
            "分钟 61，小时 *，日期 *，月份 *，星期 *",
        ),
    ],
)
def test_crontab_in_words(fields, en, zh) -> None:
    assert describe_crontab(*fields, language="en") == en
    assert describe_crontab(*fields, language="zh-hans") == zh


def test_english_ordinals() -> None:
    from taskconsole.crontab_words import _ordinal

    assert [_ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 30, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "30th", "31st"
    ]  # fmt: skip


def test_intervals_in_words() -> None:
    assert describe_interval(30, "en") == "Every 30 seconds"
    assert describe_interval(3600, "en") == "Every hour"
    assert describe_interval(3600, "zh-hans") == "每小时"
    assert describe_interval(7200, "zh-hans") == "每 2 小时"


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
