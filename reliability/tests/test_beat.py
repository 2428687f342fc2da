"""Beat's leader lease, per-slot keys and time zone reset (operations.beat)."""

from __future__ import annotations

import json
import signal
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from celery.schedules import crontab, schedule
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from operations import beat
from operations.models import BeatSlot, BeatState
from operations.testing import ManagedProcess, celery_argv, wait_for
from reliability.models import LedgerEntry

pytestmark = [pytest.mark.django_db(transaction=True)]

T0 = datetime(2026, 3, 8, 10, 0, 30, tzinfo=UTC)


def test_only_one_owner_holds_the_lease_until_it_expires() -> None:
    assert beat.acquire_lease("a", ttl=30, now=T0)
    assert not beat.acquire_lease("b", ttl=30, now=T0 + timedelta(seconds=10))
    assert beat.acquire_lease("a", ttl=30, now=T0 + timedelta(seconds=20))  # renewal
    assert not beat.acquire_lease("b", ttl=30, now=T0 + timedelta(seconds=45))
    assert beat.acquire_lease("b", ttl=30, now=T0 + timedelta(seconds=51))  # a stopped renewing
    assert not beat.acquire_lease("a", ttl=30, now=T0 + timedelta(seconds=52))


def test_slots_are_cut_on_a_grid_and_claimed_once() -> None:
    every_minute = schedule(timedelta(minutes=1))
    assert beat.slot_start(every_minute, T0) == T0.replace(second=0)
    assert beat.slot_start(every_minute, T0 + timedelta(seconds=29)) == T0.replace(second=0)
    assert beat.slot_start(crontab(minute="*"), T0) == T0.replace(second=0)
    assert beat.claim_slot("job", every_minute, T0)
    assert beat.claim_slot("job", every_minute, T0 + timedelta(seconds=20)) is None
    assert beat.claim_slot("job", every_minute, T0 + timedelta(seconds=31))
    assert beat.claim_slot("other", every_minute, T0)
    assert BeatSlot.objects.count() == 3


def test_a_time_zone_change_resets_the_schedule() -> None:
    every, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.HOURS)
    task = PeriodicTask.objects.create(
        name="tz", task="app.tasks.ping", interval=every, last_run_at=T0
    )
    assert not beat.reset_on_time_zone_change("Asia/Shanghai")  # first sight: remembered
    assert not beat.reset_on_time_zone_change("Asia/Shanghai")
    task.refresh_from_db()
    assert task.last_run_at == T0
    assert beat.reset_on_time_zone_change("Europe/Paris")
    task.refresh_from_db()
    assert task.last_run_at is None
    assert BeatState.objects.get(key="time_zone").value == "Europe/Paris"


@pytest.mark.integration
def test_two_beats_send_each_slot_once_and_the_second_takes_over(
    subprocess_env, start_module_worker, tmp_path
) -> None:
    start_module_worker(queues="default", concurrency=1, name="beats")
    run = uuid.uuid4().hex
    every, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="two-beats",
        task="reliability.ledger.ledger_default",
        interval=every,
        args=json.dumps([run]),
    )
    env = {**subprocess_env, "BEAT_LEADER_TTL": "4", "BEAT_HEARTBEAT_INTERVAL": "1"}
    beats = []
    for n in (1, 2):
        argv = celery_argv("beat", "-l", "info", "--pidfile", str(tmp_path / f"beat{n}.pid"))
        process = ManagedProcess(argv, env, name=f"beat{n}")
        beats.append(process)
        process.wait_for_output("beat: Starting...", timeout=60)
    try:
        wait_for(lambda: LedgerEntry.objects.filter(run=run).count() >= 4, timeout=60)
        senders = [p for p in beats if "Sending due task two-beats" in p.output]
        assert len(senders) == 1
        leader = senders[0]
        other = beats[1 - beats.index(leader)]
        leader.send_signal(signal.SIGKILL)
        other.wait_for_output("Sending due task two-beats", timeout=60)
        wait_for(lambda: LedgerEntry.objects.filter(run=run).count() >= 7, timeout=60)
    finally:
        for process in beats:
            process.stop()
    # One message per two-second slot, whichever beat sent it.
    keys = list(BeatSlot.objects.filter(task_name="two-beats").values_list("key", flat=True))
    assert len(keys) == len(set(keys))
    entries = LedgerEntry.objects.filter(run=run)
    assert entries.values("task_id").distinct().count() == entries.count()
    assert entries.count() <= len(keys)


def test_a_slot_already_sent_is_not_logged_as_sent(caplog, sent) -> None:
    """Celery logs "Sending due task" before deciding; a refused duplicate read as a send."""
    import logging

    from celery.beat import ScheduleEntry

    from myproject.celery import app as celery_app

    caplog.set_level(logging.INFO)
    entry = ScheduleEntry(
        name="twice", task="app.tasks.ping", schedule=timedelta(minutes=1), app=celery_app
    )
    scheduler = beat.DatabaseScheduler(app=celery_app, lazy=True)
    with celery_app.producer_or_acquire() as producer:
        scheduler.apply_entry(entry, producer=producer)
        scheduler.apply_entry(entry, producer=producer)
    said = [r.getMessage() for r in caplog.records]
    assert said.count("Scheduler: Sending due task twice (app.tasks.ping)") == 1
    assert "beat: twice was already sent for this slot; not sending it again." in said
    assert len(sent) == 1
