"""Periodic schedules in words (English and Chinese) and their next run times.

Word order differs too much between the two languages for one translated template string per
case, so each language has its own small builder. Crontab fields follow Celery: every field
must match (day of week AND day of month), day_of_week 0 is Sunday.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from celery.schedules import crontab as celery_crontab

EN_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
ZH_DAYS = ["周日", "周一", "周二", "周三", "周四", "周五", "周六"]
EN_MONTHS = [
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
DAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
MONTH_NAMES = {name[:3].lower(): i for i, name in enumerate(EN_MONTHS) if name}


def _is_zh(language: str | None) -> bool:
    return bool(language) and language.lower().startswith("zh")


def _num(token: str, names: dict[str, int]) -> int:
    token = token.strip().lower()
    if token in names:
        return names[token]
    for name, value in names.items():
        if token.startswith(name):
            return value
    return int(token)


def _items(field: str) -> list[str]:
    return [item.strip() for item in str(field).split(",") if item.strip()]


def _is_any(field: str) -> bool:
    return str(field).strip() in {"*", "*/1", ""}


def _single(field: str) -> int | None:
    return int(field) if str(field).strip().isdigit() else None


def _step(field: str) -> int | None:
    field = str(field).strip()
    if field.startswith("*/") and field[2:].isdigit():
        return int(field[2:])
    return None


def _join(parts: list[str], zh: bool) -> str:
    if zh:
        return "、".join(parts)
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _field_words(field: str, zh: bool, fmt, names: dict[str, int] | None = None) -> str:
    """Words for one crontab field: lists, ranges and steps, each value through fmt."""
    names = names or {}
    parts = []
    for item in _items(field):
        base, _, step = item.partition("/")
        if base == "*":
            parts.append(f"每{step}个" if zh else f"every {step}")
            continue
        if "-" in base:
            low, high = (_num(x, names) for x in base.split("-", 1))
            text = f"{fmt(low)}至{fmt(high)}" if zh else f"{fmt(low)} through {fmt(high)}"
            if step:
                text += f"(每{step}个)" if zh else f" (every {step})"
            parts.append(text)
        else:
            parts.append(fmt(_num(base, names)))
    return _join(parts, zh)


def describe_crontab(
    minute: str,
    hour: str,
    day_of_week: str,
    day_of_month: str,
    month_of_year: str,
    language: str | None = "en",
) -> str:
    zh = _is_zh(language)
    m1, h1 = _single(minute), _single(hour)
    mstep, hstep = _step(minute), _step(hour)

    # The time of day.
    if _is_any(minute) and _is_any(hour):
        time = "每分钟" if zh else "every minute"
    elif mstep and _is_any(hour):
        time = f"每{mstep}分钟" if zh else f"every {mstep} minutes"
    elif m1 is not None and h1 is not None:
        time = f"{h1:02d}:{m1:02d}" if zh else f"at {h1:02d}:{m1:02d}"
    elif m1 is not None and _is_any(hour):
        time = f"每小时第{m1}分" if zh else f"at minute {m1} of every hour"
    elif m1 is not None and hstep:
        time = f"每{hstep}小时的第{m1}分" if zh else f"at minute {m1} of every {hstep}th hour"
    else:
        if _is_any(minute):
            mins = "每分钟" if zh else "every minute"
        elif mstep:
            mins = f"每{mstep}分钟" if zh else f"every {mstep} minutes"
        else:
            mins = (
                f"第{_field_words(minute, zh, str)}分"
                if zh
                else f"at minute {_field_words(minute, zh, str)}"
            )
        if _is_any(hour):
            hours = "" if zh else "of every hour"
        elif hstep:
            hours = f"每{hstep}小时" if zh else f"of every {hstep}th hour"
        else:
            words = _field_words(hour, zh, lambda h: f"{h}点" if zh else f"{h:02d}:00")
            hours = f"在{words}" if zh else f"in the hour(s) from {words}"
        time = f"{hours}{mins}" if zh else f"{mins} {hours}".strip()

    # The days.
    if zh:
        prefix = ""
        if not _is_any(month_of_year):
            prefix += "每年" + _field_words(month_of_year, zh, lambda m: f"{m}月", MONTH_NAMES)
        if not _is_any(day_of_month):
            days = _field_words(day_of_month, zh, lambda d: f"{d}日")
            prefix += days if prefix else "每月" + days
        if not _is_any(day_of_week):
            week = "每" + _field_words(day_of_week, zh, lambda d: ZH_DAYS[d % 7], DAY_NAMES)
            prefix = f"{prefix}（且为{week[1:]}）" if prefix else week
        if not prefix:
            prefix = "每天" if (m1 is not None and h1 is not None) else ""
        return f"{prefix} {time}".strip() if prefix else time

    parts = [time]
    if not _is_any(day_of_week):
        parts.append("on " + _field_words(day_of_week, zh, lambda d: EN_DAYS[d % 7], DAY_NAMES))
    if not _is_any(day_of_month):
        parts.append("on day " + _field_words(day_of_month, zh, str) + " of the month")
    if not _is_any(month_of_year):
        parts.append("in " + _field_words(month_of_year, zh, lambda m: EN_MONTHS[m], MONTH_NAMES))
    if len(parts) == 1 and m1 is not None and h1 is not None:
        parts.append("every day")
    text = ", ".join(parts)
    return text[0].upper() + text[1:]


UNITS = [
    (86400, "day", "days", "天"),
    (3600, "hour", "hours", "小时"),
    (60, "minute", "minutes", "分钟"),
    (1, "second", "seconds", "秒"),
]
PERIOD_SECONDS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "microseconds": 1e-6}


def describe_interval(seconds: float, language: str | None = "en") -> str:
    zh = _is_zh(language)
    for size, one, many, zh_unit in UNITS:
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            if zh:
                return f"每{zh_unit}" if count == 1 and size != 1 else f"每{count}{zh_unit}"
            return f"Every {one}" if count == 1 else f"Every {count} {many}"
    return f"每{seconds:g}秒" if zh else f"Every {seconds:g} seconds"


def describe_periodic_task(task, language: str | None = "en") -> str:
    """Words for a django-celery-beat PeriodicTask's schedule."""
    zh = _is_zh(language)
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


def iter_names(values: Iterable[int], names: list[str]) -> list[str]:
    return [names[v] for v in values]
