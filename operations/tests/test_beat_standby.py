"""A beat started while another holds the lease stands by: it says so once and writes nothing.

django-celery-beat writes CELERY_BEAT_SCHEDULE to its tables at every scheduler start, which
put back a settings entry edited in the admin while the leader was following the edit. Only the
beat that holds (or takes) the lease writes them now (operations.beat).
"""

from __future__ import annotations

import logging
import socket
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from myproject.celery import app as celery_app
from operations import beat
from operations.models import BeatLock, BeatSlot
from operations.testing import ManagedProcess, celery_argv, raised_from, wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]

STANDBY = "holds the leader lease; standing by, will take over if it stops."
TOOK_OVER = "beat: took over the leader lease from "


def test_lease_owners_read_as_pid_on_host() -> None:
    assert beat.describe_owner("web-1:4242:0a1b2c3d") == "pid 4242 on web-1"
    assert beat.describe_owner("odd") == "odd"


def test_a_standby_scheduler_writes_nothing_until_it_takes_over(caplog) -> None:
    BeatLock.objects.create(
        name=beat.BEAT_LOCK,
        owner="other-host:42:feedbeef",
        expires_at=timezone.now() + timedelta(hours=1),
    )
    caplog.set_level(logging.INFO, logger="operations.beat")
    scheduler = beat.DatabaseScheduler(app=celery_app)
    try:
        for _ in range(3):
            scheduler.tick()
        assert not PeriodicTask.objects.exists()
        assert PeriodicTasks.last_change() is None
        standby = [r.getMessage() for r in caplog.records if STANDBY in r.getMessage()]
        assert standby == [
            "beat: another beat (pid 42 on other-host) holds the leader lease; standing by, "
            "will take over if it stops."
        ]

        BeatLock.objects.all().delete()  # the leader stopped
        scheduler.tick()
        assert BeatLock.objects.get().owner == scheduler.lease_owner
        every_30s = PeriodicTask.objects.get(name="add-every-30s")
        assert (every_30s.interval.every, every_30s.interval.period) == (30, "seconds")
        assert any(
            r.getMessage().startswith(TOOK_OVER + "pid 42 on other-host;") for r in caplog.records
        )
    finally:
        scheduler.close()
    assert not BeatLock.objects.exists()


def _start_beat(n: int, env: dict[str, str], tmp_path) -> ManagedProcess:
    argv = celery_argv("beat", "-l", "info", "--pidfile", str(tmp_path / f"beat{n}.pid"))
    process = ManagedProcess(argv, env, name=f"beat{n}")
    process.wait_for_output("beat: Starting...", timeout=60)
    return process


def _schedule_rows() -> list[tuple]:
    return list(
        PeriodicTask.objects.order_by("name").values_list(
            "name", "task", "interval_id", "crontab_id", "args", "enabled"
        )
    )


@pytest.mark.integration
def test_a_second_beat_stands_by_without_undoing_an_admin_edit(subprocess_env, tmp_path) -> None:
    env = {
        **subprocess_env,
        "BEAT_LEADER_TTL": "3",
        "BEAT_HEARTBEAT_INTERVAL": "1",
        # Nothing falls due while the test runs: the beats send no message.
        "RELIABILITY_OUTBOX_SWEEP_EVERY": "3600",
    }
    beats: list[ManagedProcess] = []
    try:
        leader = _start_beat(1, env, tmp_path)
        beats.append(leader)
        leader.wait_for_output("is the leader and sends due tasks", timeout=30)

        # The reader's admin edit of a settings entry; the leader follows it.
        every_30s = PeriodicTask.objects.get(name="add-every-30s")
        assert (every_30s.interval.every, every_30s.interval.period) == (30, "seconds")
        changes = leader.output.count("DatabaseScheduler: Schedule changed.")
        every_45s, _ = IntervalSchedule.objects.get_or_create(
            every=45, period=IntervalSchedule.SECONDS
        )
        every_30s.interval = every_45s
        every_30s.save()
        wait_for(lambda: leader.output.count("DatabaseScheduler: Schedule changed.") > changes, 30)
        rows, last_change = _schedule_rows(), PeriodicTasks.last_change()

        standby = _start_beat(2, env, tmp_path)
        beats.append(standby)
        standby.wait_for_output(STANDBY, timeout=30)
        line = next(line for line in standby.lines if STANDBY in line)
        assert f"another beat (pid {leader.process.pid} on {socket.gethostname()})" in line
        time.sleep(4)  # four of the standby's ticks (BEAT_LEADER_TTL / 3)

        every_30s.refresh_from_db()
        assert (every_30s.interval.every, every_30s.interval.period) == (45, "seconds")
        assert _schedule_rows() == rows
        assert PeriodicTasks.last_change() == last_change
        assert standby.output.count(STANDBY) == 1
        assert "Schedule changed" not in standby.output
        assert "Sending due task" not in standby.output

        # The leader stops: the standby says it took over and, as at a start, writes the
        # settings' entries (an edit of a settings entry lasts until the next start).
        leader.stop()
        standby.wait_for_output(TOOK_OVER + f"pid {leader.process.pid} on ", timeout=30)
        assert BeatLock.objects.get().owner.split(":")[-2] == str(standby.process.pid)
        every_30s.refresh_from_db()
        assert (every_30s.interval.every, every_30s.interval.period) == (30, "seconds")
        assert standby.output.count(STANDBY) == 1
    finally:
        for process in beats:
            process.stop()


@pytest.mark.parametrize(
    ("cause", "slot_kept"),
    [
        (RedisTimeoutError("Timeout reading from 127.0.0.1:6379"), True),
        (RedisConnectionError("Error 111 connecting to 127.0.0.1:6379."), False),
    ],
)
def test_a_send_the_broker_may_have_keeps_its_slot(caplog, cause, slot_kept) -> None:
    from celery.beat import ScheduleEntry, SchedulingError
    from celery.schedules import schedule
    from kombu.exceptions import OperationalError as KombuOperationalError

    def send(self, entry, producer=None, advance=True, **kwargs):
        # As Celery raises it: kombu's error about the driver's, wrapped by the scheduler.
        raise raised_from(raised_from(cause, KombuOperationalError), SchedulingError)

    scheduler = beat.DatabaseScheduler(app=celery_app)
    try:
        entry = ScheduleEntry(
            name="every-minute", task="app.tasks.ping", schedule=schedule(60), app=celery_app
        )
        with mock.patch.object(beat.BaseDatabaseScheduler, "apply_async", send):
            assert scheduler.apply_async(entry) is None
    finally:
        scheduler.close()
    assert BeatSlot.objects.filter(task_name="every-minute").exists() is slot_kept
    said = "may not have been sent" if slot_kept else "was not sent"
    assert any(said in r.getMessage() for r in caplog.records)
