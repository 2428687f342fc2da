"""What a periodic task, a crontab or an interval must be for beat to run it, in words a person
reads in the admin (English and Simplified Chinese).

Celery decides what a crontab field means: each field is parsed with Celery's own
crontab_parser and range check, so exactly what beat accepts is accepted here (a wrapped range
such as 50-10 in minutes, a name such as mon, a step larger than the field such as */90).
Only when Celery refuses a value do the messages below say why, in our words, naming the field
and the values it takes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from celery import current_app
from celery.schedules import CRON_DAYS_IN_MONTH, crontab_parser
from celery.utils.time import weekday, yearmonth
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from kombu.utils.json import loads

from .text import listed, sentences

#: field: (max_, min_) as Celery's crontab passes them to crontab_parser, and the values the
#: field takes, in words.
CRONTAB_FIELDS: dict[str, tuple[int, int, Any]] = {
    "minute": (60, 0, gettext_lazy("a number from 0 to 59")),
    "hour": (24, 0, gettext_lazy("a number from 0 to 23")),
    "day_of_month": (31, 1, gettext_lazy("a number from 1 to 31")),
    "month_of_year": (
        12,
        1,
        gettext_lazy("a number from 1 to 12 or a month's English abbreviation (jan to dec)"),
    ),
    "day_of_week": (
        7,
        0,
        gettext_lazy(
            "a number from 0 to 6 (0 is Sunday) or a day's English abbreviation (sun to sat)"
        ),
    ),
}

#: The longest interval beat is asked to keep. Celery adds the interval to the last run
#: (a datetime, which ends in the year 9999): a longer one raises OverflowError in beat.
MAX_INTERVAL = timedelta(days=36500)


def _field_label(field: str) -> str:
    from django_celery_beat.models import CrontabSchedule

    return str(CrontabSchedule._meta.get_field(field).verbose_name)


def _celery_values(part: str, max_: int, min_: int) -> set[int] | None:
    """The values Celery reads in `part`, None when Celery refuses it."""
    try:
        values = crontab_parser(max_, min_).parse(part)
    except Exception:  # ParseException, ValueError, and whatever int() of a step raises
        return None
    # crontab._expand_cronspec's own check, after the parser's.
    if any(value >= max_ + min_ or value < min_ for value in values):
        return None
    return values


def _name_value(word: str) -> int | None:
    """A word as Celery's crontab_parser reads it: a number, a month or a day name."""
    try:
        return int(word)
    except ValueError:
        pass
    for lookup in (yearmonth, weekday):
        try:
            return lookup(word)
        except KeyError:
            continue
    return None


def _why_refused(field: str, value: str, part: str, max_: int, min_: int, allowed) -> str:
    """Why Celery refuses `part` (one comma-separated item of `value`), in our words."""
    label = _field_label(field)
    if not part.strip():
        return _(
            "%(field)s: “%(value)s” has an empty item: write one value between each pair of "
            "commas, such as 1,15."
        ) % {"field": label, "value": value}
    if part.startswith("-") or "--" in part or "/-" in part:
        return _("%(field)s: “%(part)s” has a negative number. Use %(allowed)s.") % {
            "field": label,
            "part": part,
            "allowed": allowed,
        }
    base, slash, step = part.partition("/")
    if slash and not (step.isdigit() and int(step) >= 1):
        return _(
            "%(field)s: the step in “%(part)s” must be a whole number of at least 1, such as */15."
        ) % {"field": label, "part": part}
    for word in re.findall(r"\w+", base):
        number = _name_value(word)
        if number is None:
            return _(
                "%(field)s: “%(word)s” is neither a number nor a name this field takes. "
                "Use %(allowed)s."
            ) % {"field": label, "word": word, "allowed": allowed}
        if not min_ <= number <= max_ + min_ - 1:
            return _("%(field)s: %(number)s is out of range. Use %(allowed)s.") % {
                "field": label,
                "number": word,
                "allowed": allowed,
            }
    return _(
        "%(field)s: “%(value)s” is not a value this field takes. Use %(allowed)s; * for every "
        "one, a range such as 1-5, a step such as */15, or a list such as 1,15."
    ) % {"field": label, "value": value, "allowed": allowed}


def crontab_field_error(field: str, value: str) -> str | None:
    """Why beat could not use `value` for this crontab field; None when Celery accepts it."""
    max_, min_, allowed = CRONTAB_FIELDS[field]
    value = str(value)
    if _celery_values(value, max_, min_) is not None:
        return None
    for part in value.split(","):
        if _celery_values(part, max_, min_) is None:
            return _why_refused(field, value, part, max_, min_, allowed)
    # Every item alone is accepted and the whole is not: cannot happen with Celery 5's parser.
    return _why_refused(field, value, value, max_, min_, allowed)


def crontab_date_error(day_of_month: str, month_of_year: str) -> str | None:
    """Refused when no day of the month occurs in any of the months (Celery's own rule, which
    makes beat's crontab raise ValueError): such a crontab would never run."""
    days = _celery_values(str(day_of_month), 31, 1)
    months = _celery_values(str(month_of_year), 12, 1)
    if not days or not months:
        return None  # the field's own error says what is wrong
    if any(day <= CRON_DAYS_IN_MONTH[month] for month in months for day in days):
        return None
    return _("This crontab would never run: no month in “%(months)s” has a day “%(days)s”.") % {
        "months": month_of_year,
        "days": day_of_month,
    }


def crontab_errors(values: dict[str, str]) -> dict[str | None, str]:
    """Every field's error, and the never-runs error under None, for a crontab's fields."""
    errors: dict[str | None, str] = {}
    for field in CRONTAB_FIELDS:
        if field in values and (error := crontab_field_error(field, values[field])):
            errors[field] = error
    if "day_of_month" in values and "month_of_year" in values:
        error = crontab_date_error(values["day_of_month"], values["month_of_year"])
        if error:
            errors[None] = error
    return errors


def interval_error(every: int | None, period: str | None) -> str | None:
    """Refused when beat cannot add the interval to a date: too long (or not a period)."""
    if every is None or not period:
        return None
    try:
        delta = timedelta(**{period: every})
    except (OverflowError, TypeError, ValueError):
        delta = None
    if delta is None or delta > MAX_INTERVAL:
        return _(
            "This interval is too long: beat keeps intervals of up to 100 years (36,500 days)."
        )
    return None


JSON_SHAPES = {"args": list, "kwargs": dict, "headers": dict}


def json_error(field: str, text: str | None) -> str | None:
    """Refused unless `text` is what beat passes on: args a JSON list, kwargs and headers a
    JSON object. Empty is accepted (beat reads it as [] or {})."""
    if field == "args":
        shape = _('Positional arguments must be a JSON list, such as [1, "a"]; [] for none.')
    elif field == "kwargs":
        shape = _('Keyword arguments must be a JSON object, such as {"x": 1}; {} for none.')
    else:
        shape = _('Message headers must be a JSON object, such as {"x": "y"}; {} for none.')
    if not (text or "").strip():
        return None
    try:
        value = loads(text)
    except ValueError as exc:
        line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        if line is None:
            return sentences(_("This is not valid JSON."), shape)
        return sentences(
            _("This is not valid JSON (line %(line)d, column %(column)d).")
            % {"line": line, "column": column},
            shape,
        )
    if not isinstance(value, JSON_SHAPES[field]):
        return shape
    return None


def registered_tasks(app=None) -> set[str]:
    """The task names this process's Celery app knows, after autodiscovery (what the admin's
    "Task (registered)" list shows, Celery's own celery.* tasks included)."""
    app = app or current_app
    app.loader.import_default_modules()
    return set(app.tasks)


def known_queues(app=None) -> list[str]:
    """The queues this site declares: CELERY_TASK_QUEUES, the default queue, the routes'."""
    app = app or current_app
    conf = app.conf
    names = {queue.name for queue in conf.task_queues or ()}
    if conf.task_default_queue:
        names.add(conf.task_default_queue)
    routes = conf.task_routes
    for route in _route_values(routes):
        if isinstance(route, dict) and route.get("queue"):
            queue = route["queue"]
            names.add(getattr(queue, "name", queue))
    return sorted(str(name) for name in names)


def _route_values(routes: Any) -> Iterable[Any]:
    if isinstance(routes, dict):
        return routes.values()
    if isinstance(routes, list | tuple):
        values: list[Any] = []
        for item in routes:
            if isinstance(item, dict):
                values.extend(item.values())
        return values
    return ()


def unknown_queue_warning(queue: str | None, app=None) -> str | None:
    """A warning, not a refusal: workers may consume queues this process does not declare."""
    if not queue:
        return None
    queues = known_queues(app)
    if queue in queues:
        return None
    return _(
        "Saved, but the queue “%(queue)s” is not one this site declares (%(queues)s): the task "
        "waits there until a worker consumes that queue. Check the name unless your workers "
        "consume it."
    ) % {"queue": queue, "queues": listed(queues)}
