"""Beat's crontab slots across daylight saving time and restarts, on a controlled clock.

The clock is what is under test here, so the scheduler's due logic (django-celery-beat's
ModelEntry and TzAwareCrontab, as the DatabaseScheduler ticks them) runs against a simulated
clock; the real beats are in reliability/tests/test_beat.py.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_celery_beat.schedulers import ModelEntry
from django_celery_beat.tzcrontab import TzAwareCrontab

from operations import beat

pytestmark = [pytest.mark.django_db]

BERLIN = ZoneInfo("Europe/Berlin")


def at(zone: ZoneInfo, *fields: int, fold: int = 0) -> datetime:
    return datetime(*fields, tzinfo=zone, fold=fold).astimezone(UTC)


def test_a_crontab_slot_is_its_latest_time_not_the_minute_of_the_send() -> None:
    every_two = crontab(minute="*/2")
    sent = datetime(2026, 5, 4, 10, 0, 2, tzinfo=UTC)
    assert beat.slot_start(every_two, sent) == sent.replace(second=0)
    # A beat restarted 70 s later finds the same slot due (stale last_run_at): same key.
    assert beat.slot_key("job", every_two, sent + timedelta(seconds=70)) == beat.slot_key(
        "job", every_two, sent
    )
    assert beat.claim_slot("job", every_two, sent)
    assert beat.claim_slot("job", every_two, sent + timedelta(seconds=70)) is None
    assert beat.claim_slot("job", every_two, sent + timedelta(seconds=120))


def test_dst_wall_clock_slots() -> None:
    daily = TzAwareCrontab(minute=30, hour=2, tz=BERLIN)
    # Autumn: 02:30 happens twice (CEST, then CET) and is one slot.
    first, second = at(BERLIN, 2026, 10, 25, 2, 30), at(BERLIN, 2026, 10, 25, 2, 30, fold=1)
    assert second - first == timedelta(hours=1)
    assert beat.slot_start(daily, first) == beat.slot_start(daily, second) == first
    # Spring: 02:30 does not exist; Celery fires it at 03:30 CEST, which is its slot.
    fired = datetime(2026, 3, 29, 1, 30, 1, tzinfo=UTC)
    assert beat.slot_start(daily, fired) == fired.replace(second=0)
    assert beat.slot_start(daily, fired - timedelta(minutes=20)) == at(BERLIN, 2026, 3, 28, 2, 30)
    # Every minute: the repeated hour's minutes are real minutes, each a slot of its own.
    every_minute = TzAwareCrontab(minute="*", tz=BERLIN)
    assert beat.slot_start(every_minute, first) != beat.slot_start(every_minute, second)


def runs_per_day(hour: int, minute: int, zone: str, first: date, days: int) -> Counter:
    """Tick a daily crontab minute by minute, with a beat SIGKILLed after every send.

    The restart, 90 s later, reads the last_run_at saved before that send (django-celery-beat
    saves it every few minutes only), so the slot is due again; claim_slot must refuse it.
    """
    tz = ZoneInfo(zone)
    clock = [datetime.combine(first, datetime.min.time(), tzinfo=tz).astimezone(UTC)]

    class ClockEntry(ModelEntry):
        def __init__(self, model, app=None) -> None:
            super().__init__(model, app)
            self.schedule.nowfun = lambda: clock[0].astimezone(self.schedule.tz)

        def _default_now(self) -> datetime:
            return clock[0].astimezone(self.app.timezone)

    schedule = CrontabSchedule(minute=str(minute), hour=str(hour), timezone=zone)
    task = PeriodicTask(name=f"dst-{zone}-{hour}", crontab=schedule, last_run_at=clock[0])
    entry, saved, restart_at, restarted = ClockEntry(task), clock[0], None, False
    runs: Counter = Counter()
    end = clock[0] + timedelta(days=days)
    while clock[0] < end:
        if restart_at is not None and clock[0] >= restart_at:
            task.last_run_at = saved
            entry, restart_at, restarted = ClockEntry(task), None, True
        if entry.is_due()[0]:
            sent, entry = entry, next(entry)
            if beat.claim_slot(sent.name, sent.schedule, clock[0]):
                runs[clock[0].astimezone(tz).date()] += 1
                if not restarted:
                    restart_at = clock[0] + timedelta(seconds=90)
            if restart_at is None:
                saved, restarted = task.last_run_at, False
        clock[0] += timedelta(minutes=1)
    return runs


@pytest.mark.parametrize(
    ("zone", "change"),
    [
        ("Europe/Berlin", date(2026, 3, 29)),
        ("Europe/Berlin", date(2026, 10, 25)),
        ("America/New_York", date(2026, 3, 8)),
        ("America/New_York", date(2026, 11, 1)),
    ],
)
@pytest.mark.parametrize(("hour", "minute"), [(2, 30), (9, 0)])
def test_a_daily_crontab_runs_once_a_day_across_dst_and_restarts(
    zone: str, change: date, hour: int, minute: int
) -> None:
    first = change - timedelta(days=2)
    runs = runs_per_day(hour, minute, zone, first, days=5)
    assert [runs[first + timedelta(days=n)] for n in range(5)] == [1] * 5
