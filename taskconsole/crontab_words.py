"""Crontab schedules in words, in English and in Chinese (for taskconsole.describe).

Word order differs too much between the two languages for one translated template string per
case, so each language has its own small builder. Each field is read with Celery's own parser
(values, names, "a-b", "*/n", "a-b/n", lists, ranges that wrap round); every field must match
(day of week AND day of month); day_of_week 0 is Sunday.

Steps are said with their bounds ("every 5 hours from 00:00 through 20:00": */5 does not run
5 hours after 20:00) and days of the month by the days themselves, so no sentence claims more
than Celery does. A schedule Celery cannot read is shown as its fields.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from celery.schedules import ParseException, crontab_parser

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
#: Celery's fields: (how many values, the first value). Names (sun, jan) are Celery's too.
FIELD_RANGES = {
    "minute": (60, 0),
    "hour": (24, 0),
    "day_of_week": (7, 0),
    "day_of_month": (31, 1),
    "month_of_year": (12, 1),
}
#: A week is read from Monday; Sunday is Celery's 0.
WEEK_ORDER = [1, 2, 3, 4, 5, 6, 0]
ELLIPSIS = "…"

_RANGE_STEP = re.compile(r"(\w+?)-(\w+)/(\w+)?")
_RANGE = re.compile(r"(\w+?)-(\w+)")
_STAR_STEP = re.compile(r"\*/(\w+)?")


def is_zh(language: str | None) -> bool:
    return bool(language) and language.lower().startswith("zh")


@dataclass(frozen=True)
class _Item:
    """One part of a crontab field, as written: a value, a range, or a range with a step.

    `values` are in the order Celery walks them (a range past the end wraps round, 22-2 is
    22, 23, 0, 1, 2); a "*/n" is the range of the whole field with the step n.
    """

    kind: str  # "value", "range" or "step"
    values: tuple[int, ...]
    step: int = 1

    @property
    def first(self) -> int:
        return self.values[0]

    @property
    def last(self) -> int:
        return self.values[-1]


def _walk(parser: crontab_parser, part: str) -> tuple[str, tuple[int, ...], int]:
    """(kind, values in Celery's order, step) of one comma-separated part of a field."""
    values = parser.parse(part)  # Celery's own reading: raises on what Celery refuses
    for pattern, kind in ((_RANGE_STEP, "step"), (_RANGE, "range"), (_STAR_STEP, "star")):
        match = pattern.match(part)
        if match is None:
            continue
        if kind == "star":
            return "step", tuple(sorted(values)), int(match.group(1))
        start = min(parser.parse(match.group(1)))
        ordered = sorted(values, key=lambda v: (v < start, v))  # a wrapped range from start
        return kind, tuple(ordered), int(match.group(3)) if kind == "step" else 1
    if part == "*":
        return "range", tuple(sorted(values)), 1
    return "value", tuple(sorted(values)), 1


def _progression(values: list[int]) -> int | None:
    """The common difference of sorted values that step evenly, else None."""
    steps = {b - a for a, b in itertools.pairwise(values)}
    return steps.pop() if len(steps) == 1 else None


def _runs(values: list[int]) -> list[_Item]:
    """Sorted single values as written items: three or more in a row make a range."""
    items: list[_Item] = []
    run: list[int] = []
    for value in [*values, None]:
        if run and value is not None and value == run[-1] + 1:
            run.append(value)
            continue
        if len(run) >= 3:
            items.append(_Item("range", tuple(run)))
        else:
            items.extend(_Item("value", (v,)) for v in run)
        run = [] if value is None else [value]
    return items


def _field(text: str, name: str) -> list[_Item] | None:
    """The items of one crontab field, None when it matches every value (any)."""
    size, low = FIELD_RANGES[name]
    parser = crontab_parser(size, low)
    items: list[_Item | None] = []
    singles: set[int] = set()
    matched: set[int] = set()
    for part in str(text).split(","):
        kind, values, step = _walk(parser, part)
        matched.update(values)
        if kind == "step" and step == 1:
            kind = "range"
        if kind == "value" or len(values) <= 2:
            # Where the first single stands, all the singles go (None marks the place).
            if not singles and None not in items:
                items.append(None)
            singles.update(values)
        else:
            items.append(_Item(kind, values, step if kind == "step" else 1))
    if matched == set(range(low, low + size)):
        return None
    merged: list[_Item] = []
    ordered = sorted(singles)
    difference = _progression(ordered)
    if len(items) == 1 and len(ordered) >= 5 and difference and difference > 1:
        # 0,3,6,9,12,15,18,21 is written out, but it reads as its step.
        merged = [_Item("step", tuple(ordered), difference)]
    elif ordered:
        merged = _runs(ordered)
    out: list[_Item] = []
    for item in items:
        if item is None:
            out.extend(merged)
        else:
            out.append(item)
    return out


def _values_only(items: list[_Item]) -> bool:
    return all(item.kind == "value" for item in items)


def _circular_groups(present: set[int], order: list[int]) -> list[list[int]]:
    """The present values in the order given, a group for each unbroken run (wrapping)."""
    if not present:
        return []
    size = len(order)
    start = next(
        i for i, v in enumerate(order) if v in present and order[(i - 1) % size] not in present
    )
    groups: list[list[int]] = []
    for i in range(size):
        value = order[(start + i) % size]
        if value not in present:
            continue
        before = order[(start + i - 1) % size]
        if groups and before in present and i > 0:
            groups[-1].append(value)
        else:
            groups.append([value])
    return groups


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _and(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _clock(hour: int, minute: int) -> str:
    return f"{hour:02d}:{minute:02d}"


def _shortened(values: tuple[int, ...] | list[int], sep: str, fmt, zh: bool = False) -> str:
    """A list of stepped values: all of them when few, else the first three … the last."""
    shown = [fmt(v) for v in values]
    if len(shown) <= 5:
        return sep.join(shown) if zh else _and(shown)
    if zh:
        return sep.join(shown[:3]) + "……" + shown[-1]
    return ", ".join([*shown[:3], ELLIPSIS, shown[-1]])


# -- The time of day ------------------------------------------------------------------------


def _every_minutes(items: list[_Item] | None) -> int | None:
    """n when the minutes are every n minutes from :00 round the whole hour (n divides 60)."""
    if items is None or len(items) != 1 or items[0].kind != "step":
        return None
    item = items[0]
    n = item.step
    return n if 60 % n == 0 and item.values == tuple(range(0, 60, n)) else None


def _minutes_en(items: list[_Item] | None) -> str:
    if items is None:
        return "every minute"
    every = _every_minutes(items)
    if every:
        return f"every {every} minutes"
    parts: list[str] = []
    values = [item.first for item in items if item.kind == "value"]
    for item in items:
        if item.kind == "value":
            if item.first == values[0]:
                label = "minute" if len(values) == 1 else "minutes"
                parts.append(f"at {label} " + _and([str(v) for v in values]))
        elif item.kind == "range":
            parts.append(f"every minute from minute {item.first} through {item.last}")
        else:
            parts.append(f"every {item.step} minutes from minute {item.first} through {item.last}")
    return _and(parts)


def _minutes_zh(items: list[_Item] | None, once: bool) -> str:
    """The minutes in Chinese; `once` adds 一次 to a bare "every n minutes"."""
    if items is None:
        return "每分钟一次" if once else "每分钟"
    every = _every_minutes(items)
    if every:
        return f"每 {every} 分钟一次" if once else f"每 {every} 分钟"
    parts: list[str] = []
    values = [item.first for item in items if item.kind == "value"]
    for item in items:
        if item.kind == "value":
            if item.first == values[0]:
                parts.append("第 " + "、".join(str(v) for v in values) + " 分钟")
        elif item.kind == "range":
            parts.append(f"第 {item.first} 至 {item.last} 分钟内每分钟")
        else:
            parts.append(f"第 {item.first} 至 {item.last} 分钟内每 {item.step} 分钟")
    return "每小时" + "，以及".join(parts)


def _times_en(minute: int, hours: list[_Item]) -> str:
    parts: list[str] = []
    values = [item.first for item in hours if item.kind == "value"]
    for item in hours:
        if item.kind == "value":
            if item.first == values[0]:
                parts.append("at " + _and([_clock(h, minute) for h in values]))
        else:
            every = "every hour" if item.kind == "range" else f"every {item.step} hours"
            parts.append(
                f"{every} from {_clock(item.first, minute)} through {_clock(item.last, minute)}"
            )
    return _and(parts)


def _times_zh(minute: int, hours: list[_Item]) -> str:
    parts: list[str] = []
    values = [item.first for item in hours if item.kind == "value"]
    for item in hours:
        if item.kind == "value":
            if item.first == values[0]:
                parts.append("、".join(_clock(h, minute) for h in values))
        else:
            every = "每小时" if item.kind == "range" else f"每 {item.step} 小时"
            parts.append(f"{_clock(item.first, minute)} 至 {_clock(item.last, minute)} {every}一次")
    return "，以及 ".join(parts)


def _hour_windows(hours: list[_Item], zh: bool) -> str:
    """The hours as spans of the clock: 03:00–03:59, 08:00–17:59."""
    spans = [f"{_clock(item.first, 0)}–{_clock(item.last, 59)}" for item in hours]
    return "、".join(spans) if zh else _and(spans)


def _hour_numbers(hours: list[_Item], zh: bool) -> str:
    """Hours as their numbers, a run of three or more as a span: 0, 3, 6, 8–18 and 21."""
    values = sorted({v for item in hours for v in item.values})
    words = [
        f"{item.first}–{item.last}" if item.kind == "range" else str(item.first)
        for item in _runs(values)
    ]
    return "、".join(words) if zh else _and(words)


def _time_of_day(
    minutes: list[_Item] | None, hours: list[_Item] | None, zh: bool
) -> tuple[str, bool]:
    """(the time of day in words, whether it is only a few clock times such as 07:30)."""
    if minutes is None and hours is None:
        return ("每分钟" if zh else "every minute"), False
    if hours is None:
        every = _every_minutes(minutes)
        if every:
            return (f"每 {every} 分钟" if zh else f"every {every} minutes"), False
        if minutes is not None and len(minutes) == 1 and minutes[0].kind == "value":
            m = minutes[0].first
            if zh:
                return ("每小时整点" if m == 0 else f"每小时第 {m} 分钟"), False
            return ("every hour, on the hour" if m == 0 else f"at minute {m} of every hour"), False
        if zh:
            return _minutes_zh(minutes, once=False), False
        return f"{_minutes_en(minutes)} of every hour", False
    if minutes is not None and len(minutes) == 1 and minutes[0].kind == "value":
        m = minutes[0].first
        text = _times_zh(m, hours) if zh else _times_en(m, hours)
        return text, _values_only(hours)
    if minutes is not None and _values_only(minutes) and _values_only(hours):
        times = [(h.first, m.first) for h in hours for m in minutes]
        if len(times) <= 6:
            clocks = [_clock(h, m) for h, m in sorted(times)]
            return ("、".join(clocks) if zh else "at " + _and(clocks)), True
    if all(item.kind != "step" for item in hours):
        where = _hour_windows(hours, zh)
        if zh:
            return f"{where}，{_minutes_zh(minutes, once=True)}", False
        return f"{_minutes_en(minutes)} during {where}", False
    # Stepped hours for minutes that are not one: the hours by their numbers.
    numbers = _hour_numbers(hours, zh)
    if zh:
        return f"{numbers} 点这几个小时内，{_minutes_zh(minutes, once=True)}", False
    return f"{_minutes_en(minutes)} during hours {numbers}", False


# -- The days --------------------------------------------------------------------------------


def _days_of_month_en(items: list[_Item]) -> str:
    parts: list[str] = []
    values = [item.first for item in items if item.kind == "value"]
    for item in items:
        if item.kind == "value":
            if item.first == values[0]:
                parts.append("on the " + _and([_ordinal(v) for v in values]))
        elif item.kind == "range":
            parts.append(f"from the {_ordinal(item.first)} through the {_ordinal(item.last)}")
        else:
            parts.append("on the " + _shortened(item.values, ", ", _ordinal))
    return _and(parts)


def _days_of_month_zh(items: list[_Item]) -> str:
    parts: list[str] = []
    values = [item.first for item in items if item.kind == "value"]
    for item in items:
        if item.kind == "value":
            if item.first == values[0]:
                parts.append("、".join(str(v) for v in values) + " 日")
        elif item.kind == "range":
            parts.append(f"{item.first} 日至 {item.last} 日")
        else:
            parts.append(_shortened(item.values, "、", str, zh=True) + " 日")
    return "、".join(parts)


def _week(present: set[int], zh: bool) -> str:
    """Days of the week: on Mondays, Monday through Friday / 周一、周一至周五."""
    words = []
    for group in _circular_groups(present, WEEK_ORDER):
        if len(group) >= 3:
            first, last = group[0], group[-1]
            words.append(
                f"{ZH_DAYS[first]}至{ZH_DAYS[last]}"
                if zh
                else f"{EN_DAYS[first]} through {EN_DAYS[last]}"
            )
        else:
            words.extend(ZH_DAYS[d] if zh else f"{EN_DAYS[d]}s" for d in group)
    return "、".join(words) if zh else _and(words)


def _months(present: set[int], zh: bool) -> str:
    """Months: January, April and July / 1、4、7 月; three or more in a row as a span."""
    groups = _circular_groups(present, list(range(1, 13)))
    if zh and all(len(group) < 3 for group in groups):
        return "、".join(str(m) for group in groups for m in group) + " 月"
    words = []
    for group in groups:
        if len(group) >= 3:
            first, last = group[0], group[-1]
            words.append(
                f"{first} 月至 {last} 月" if zh else f"{EN_MONTHS[first]} through {EN_MONTHS[last]}"
            )
        else:
            words.extend(f"{m} 月" if zh else EN_MONTHS[m] for m in group)
    return "、".join(words) if zh else _and(words)


def _fallback(minute, hour, day_of_week, day_of_month, month_of_year, zh: bool) -> str:
    """The fields themselves, for a schedule that cannot be read (it would not run either)."""

    def shown(value) -> str:
        return str(value) if str(value).strip() else '""'

    if zh:
        return (
            f"分钟 {shown(minute)}，小时 {shown(hour)}，日期 {shown(day_of_month)}，"
            f"月份 {shown(month_of_year)}，星期 {shown(day_of_week)}"
        )
    return (
        f"Minute {shown(minute)}, hour {shown(hour)}, day of month {shown(day_of_month)}, "
        f"month {shown(month_of_year)}, day of week {shown(day_of_week)}"
    )


def describe_crontab(
    minute: str,
    hour: str,
    day_of_week: str,
    day_of_month: str,
    month_of_year: str,
    language: str | None = "en",
) -> str:
    """A crontab's fields (in Celery's order, its strings or numbers) in words."""
    zh = is_zh(language)
    try:
        minutes = _field(minute, "minute")
        hours = _field(hour, "hour")
        week = _field(day_of_week, "day_of_week")
        days = _field(day_of_month, "day_of_month")
        months = _field(month_of_year, "month_of_year")
    except (ValueError, TypeError, IndexError, KeyError, ParseException):
        return _fallback(minute, hour, day_of_week, day_of_month, month_of_year, zh)
    time, clock_times = _time_of_day(minutes, hours, zh)
    weekdays = {v for item in week for v in item.values} if week else set()
    month_set = {v for item in months for v in item.values} if months else set()
    if zh:
        return _days_zh(time, hours, weekdays, days, month_set, months)
    return _days_en(time, clock_times, hours, weekdays, days, month_set, months)


def _days_zh(time, hours, weekdays, days, month_set, months) -> str:
    prefix = ""
    single_month = months is not None and len(month_set) == 1
    if days is not None:
        day_words = _days_of_month_zh(days)
        if months is None:
            prefix = f"每月 {day_words}"
        elif single_month:
            prefix = f"每年 {_months(month_set, True)} {day_words}"
        else:
            prefix = f"每年 {_months(month_set, True)}的 {day_words}"
        if weekdays:
            prefix += f"（且为{_week(weekdays, True)}）"
    elif weekdays:
        week = "每" + _week(weekdays, True)
        prefix = f"每年 {_months(month_set, True)}的{week}" if months is not None else week
    elif months is not None:
        prefix = f"每年 {_months(month_set, True)}" + ("每天" if hours is not None else "")
    elif hours is not None:
        prefix = "每天"
    if not prefix:
        return time
    if not time[0].isdigit():
        return f"{prefix}，{time}"
    # A space between words and figures (每天 00:00), none after full-width punctuation.
    return f"{prefix}{time}" if prefix.endswith("）") else f"{prefix} {time}"


def _days_en(time, clock_times, hours, weekdays, days, month_set, months) -> str:
    when = ""
    in_months = _months(month_set, False) if months is not None else ""
    if days is not None:
        single_day = len(days) == 1 and days[0].kind == "value"
        if single_day and len(month_set) == 1:
            when = f"on {in_months} {days[0].first}"
        elif months is not None and (_values_only(days) or len(month_set) == 1):
            when = f"{_days_of_month_en(days)} of {in_months}"
        else:
            when = f"{_days_of_month_en(days)} of the month"
            if months is not None:
                when += f", in {in_months}"
        if weekdays:
            when += f", only on {_week(weekdays, False)}"
    elif weekdays:
        when = f"on {_week(weekdays, False)}" + (f" in {in_months}" if in_months else "")
    elif months is not None:
        when = ("every day in " if hours is not None else "in ") + in_months
    elif clock_times:
        when = "every day"
    text = f"{time}, {when}" if when else time
    return text[0].upper() + text[1:]
