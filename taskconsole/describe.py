"""Periodic schedules in words (English and Chinese) and their next run times.

Crontabs are put in words by taskconsole.crontab_words; intervals, solar and clocked schedules
here.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from celery.schedules import crontab as celery_crontab

from .crontab_words import describe_crontab, is_zh

__all__ = ["describe_crontab", "describe_interval", "describe_periodic_task", "next_runs"]


UNITS = [
    (86400, "day", "days", "天"),
    (3600, "hour", "hours", "小时"),
    (60, "minute", "minutes", "分钟"),
    (1, "second", "seconds", "秒"),
]
PERIOD_SECONDS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "microseconds": 1e-6}


def describe_interval(seconds: float, language: str | None = "en") -> str:
    zh = is_zh(language)
    for size, one, many, zh_unit in UNITS:
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            if zh:
                return f"每{zh_unit}" if count == 1 and size != 1 else f"每 {count} {zh_unit}"
            return f"Every {one}" if count == 1 else f"Every {count} {many}"
    return f"每 {seconds:g} 秒" if zh else f"Every {seconds:g} seconds"


def describe_periodic_task(task, language: str | None = "en") -> str:
    """Words for a django-celery-beat PeriodicTask's schedule."""
    zh = is_zh(language)
    if task.interval_id:
        interval = task.interval
        return describe_interval(interval.every * PERIOD_SECONDS[interval.period], language)
    if task.crontab_id:
        c = task.crontab
        text = describe_crontab(
            c.minute, c.hour, c.day_of_week, c.day_of_month, c.month_of_year, language
        )
        return f"{text}（{c.timezone}）" if zh else f"{text} ({c.timezone})"
    if task.solar_id:
        s = task.solar
        event = s.get_event_display()
        return (
            f"{event}（纬度 {s.latitude}，经度 {s.longitude}）"
            if zh
            else f"At {event} ({s.latitude}, {s.longitude})"
        )
    if task.clocked_id:
        at = task.clocked.clocked_time
        return f"仅一次：{at:%Y-%m-%d %H:%M}" if zh else f"Once, at {at:%Y-%m-%d %H:%M}"
    return "无计划" if zh else "No schedule"


def crontab_next_runs(
    minute: str,
    hour: str,
    day_of_week: str,
    day_of_month: str,
    month_of_year: str,
    tz: ZoneInfo,
    after: datetime,
    count: int = 3,
) -> list[datetime]:
    """The next count times matching the crontab, in tz, strictly after `after`."""
    spec = celery_crontab(minute, hour, day_of_week, day_of_month, month_of_year)
    minutes, hours = sorted(spec.minute), sorted(spec.hour)
    start = after.astimezone(tz)
    day: date = start.date()
    found: list[datetime] = []
    for _ in range(366 * 6):
        if (
            day.month in spec.month_of_year
            and day.day in spec.day_of_month
            and day.isoweekday() % 7 in spec.day_of_week
        ):
            for h in hours:
                for m in minutes:
                    candidate = datetime(day.year, day.month, day.day, h, m, tzinfo=tz)
                    if candidate > start:
                        found.append(candidate)
                        if len(found) >= count:
                            return found
        day += timedelta(days=1)
    return found


def interval_next_runs(
    every: timedelta, last_run: datetime | None, now: datetime, count: int = 3
) -> list[datetime]:
    first = (last_run + every) if last_run else now
    first = max(first, now)
    return [first + every * i for i in range(count)]


def next_runs(task, now: datetime, count: int = 3) -> list[datetime]:
    """Upcoming run times of a PeriodicTask (aware datetimes; render in the viewer's zone)."""
    if not task.enabled:
        return []
    if task.interval_id:
        every = timedelta(seconds=task.interval.every * PERIOD_SECONDS[task.interval.period])
        if task.last_run_at is None and task.start_time:
            # django-celery-beat runs it first at its start time (at once if that has passed).
            first = max(task.start_time, now)
            return [first + every * i for i in range(count)]
        # A task that never ran counts from its last change, as django-celery-beat's entry
        # does, not from whenever the page is looked at.
        return interval_next_runs(every, task.last_run_at or task.date_changed, now, count)
    if task.crontab_id:
        c = task.crontab
        tz = ZoneInfo(str(c.timezone))
        return crontab_next_runs(
            c.minute, c.hour, c.day_of_week, c.day_of_month, c.month_of_year, tz, now, count
        )
    if task.clocked_id:
        at = task.clocked.clocked_time
        return [at] if at > now and not task.last_run_at else []
    if task.solar_id:
        try:
            schedule = task.solar.schedule
            return [now + schedule.remaining_estimate(task.last_run_at or now)]
        except Exception:
            return []
    return []
