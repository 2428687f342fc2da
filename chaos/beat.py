"""Beat scenarios: two beats at once, a beat SIGKILLed after a dispatch, time zones, DST.

The real-beat scenarios each get a database of their own (myproject_chaos_<name>): beat's
leader lease, its slot keys and the remembered TIME_ZONE are global to a database, so two of
these scenarios (or one beside the others') sharing one would disturb each other. The DST
scenario drives the product scheduler's due logic with a controlled clock instead of waiting
for March and October.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from chaos.common import BASE_DIR, ENV, Context, Worker

LEDGER_TASK = "reliability.ledger.ledger_default"
TWO_BEATS_MINUTES = float(os.environ.get("CHAOS_TWO_BEATS_MINUTES", "10"))
LEADER_TTL = "10"


# Databases ---------------------------------------------------------------------------------


def scenario_database(ctx: Context, name: str) -> tuple[str, str]:
    """(alias, url) of a migrated database for this scenario alone, registered with Django."""
    from django.db import connections

    if ctx.database_url.startswith("postgres"):
        import psycopg

        db_name = f"myproject_chaos_{name}"
        with psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [db_name]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{db_name}"')
        url = ctx.database_url.rsplit("/", 1)[0] + f"/{db_name}"
    else:
        url = f"sqlite:///{ctx.tmp / f'chaos_{name}.sqlite3'}"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0", "--skip-checks"],
        cwd=BASE_DIR,
        env={**ENV, "DATABASE_URL": url},
        check=True,
        timeout=300,
    )
    import environ

    alias = f"chaos_{name}"
    config = environ.Env.db_url_config(url)
    connections.settings[alias] = connections.configure_settings(
        {"default": connections.settings["default"], alias: config}
    )[alias]
    return alias, url


def quiet_other_schedules(alias: str, keep: str, installed: bool = False) -> None:
    """Disable every periodic task but ours, so the beats send nothing else to the broker.

    Beat installs the settings' schedule (add-every-30s, the outbox sweep...) a moment after it
    logs "Starting..." (`installed`: wait for that); it leaves `enabled` alone, so they stay off.
    """
    from django.utils import timezone
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    from myproject.celery import app

    names = list(app.conf.beat_schedule)
    deadline = time.monotonic() + 30
    while installed and time.monotonic() < deadline:
        if PeriodicTask.objects.using(alias).filter(name__in=names).count() >= len(names):
            break
        time.sleep(0.1)
    PeriodicTask.objects.using(alias).exclude(name=keep).update(enabled=False)
    PeriodicTasks.objects.using(alias).update_or_create(
        ident=1, defaults={"last_update": timezone.now()}
    )


def add_crontab(alias: str, name: str, run: str, queue: str, **fields: str):
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    PeriodicTask.objects.using(alias).filter(name__startswith="chaos-").delete()
    schedule = CrontabSchedule.objects.using(alias).create(**fields)
    return PeriodicTask.objects.using(alias).create(
        name=name, task=LEDGER_TASK, crontab=schedule, args=json.dumps([run]), queue=queue
    )


# Processes ---------------------------------------------------------------------------------


class Beat:
    """A real `celery -A myproject beat` with the product's scheduler, logging to a file."""

    def __init__(self, log: Path, env: dict[str, str]) -> None:
        self.log = log
        self.handle = log.open("a")
        self.start_offset = log.stat().st_size
        pidfile = log.with_suffix(f".{uuid.uuid4().hex[:6]}.pid")
        argv = ["-m", "celery", "-A", "myproject", "beat", "-l", "info", "--pidfile", str(pidfile)]
        self.process = subprocess.Popen(
            [sys.executable, *argv],
            cwd=BASE_DIR,
            env={**ENV, **env},
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_for("beat: Starting...", 90)

    def output(self) -> str:
        with self.log.open(errors="replace") as handle:
            handle.seek(self.start_offset)
            return handle.read()

    def wait_for(self, text: str, timeout: float, count: int = 1) -> bool:
        deadline = time.monotonic() + timeout
        while self.output().count(text) < count:
            if time.monotonic() > deadline or self.process.poll() is not None:
                return False
            time.sleep(0.2)
        return True

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.handle.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        self.kill()


def redis_broker(ctx: Context) -> str | None:
    return next((url for name, url in ctx.brokers if name == "Redis"), None) or next(
        (url for _, url in ctx.brokers), None
    )


def ledger_minutes(alias: str, run: str) -> tuple[Counter, int]:
    """Runs per UTC minute (the slot of an every-minute crontab) and unfinished runs."""
    from reliability.models import LedgerEntry

    per_minute: Counter = Counter()
    unfinished = 0
    for at, done in LedgerEntry.objects.using(alias).filter(run=run).values_list("at", "done"):
        per_minute[at.astimezone(UTC).replace(second=0, microsecond=0)] += 1
        unfinished += not done
    return per_minute, unfinished


def minute_boundaries(after: datetime, until: datetime) -> list[datetime]:
    first = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return [
        first + timedelta(minutes=i) for i in range(int((until - first).total_seconds() // 60) + 1)
    ]


# 6. Two beats at once ----------------------------------------------------------------------


def run_two_beats(ctx: Context) -> list[dict]:
    """Two beats for ten minutes on an every-minute crontab; the leader SIGKILLed half-way."""
    started = time.monotonic()
    broker = redis_broker(ctx)
    if broker is None:
        return [{"scenario": "6 two beats", "note": "no broker reachable: skipped"}]
    alias, url = scenario_database(ctx, "beats")
    run = f"beats-{uuid.uuid4().hex[:8]}"
    queue, name = f"chaos-{run}", f"chaos-{run}"
    created = add_crontab(alias, name, run, queue, minute="*", timezone="UTC").date_changed
    quiet_other_schedules(alias, keep=name)
    worker = Worker(broker, queue, "beats", ctx.tmp / f"{run}-worker.log", {"DATABASE_URL": url})
    env = {"DATABASE_URL": url, "CELERY_BROKER_URL": broker, "BEAT_LEADER_TTL": LEADER_TTL}
    beats = [Beat(ctx.tmp / f"{run}-beat{n}.log", env) for n in (1, 2)]
    quiet_other_schedules(alias, keep=name, installed=True)
    deadline = started + TWO_BEATS_MINUTES * 60
    killed = 0
    from reliability.models import LedgerEntry

    entries = LedgerEntry.objects.using(alias).filter(run=run)
    sent_line = f"Sending due task {name}"
    try:
        # Half-way, SIGKILL whichever beat sends, right after it sends.
        while time.monotonic() < started + TWO_BEATS_MINUTES * 30:
            time.sleep(1)
        leader = None
        while leader is None and time.monotonic() < deadline - 90:
            counts = [beat.output().count(sent_line) for beat in beats]
            runs_before = entries.count()
            for _ in range(700):
                for index, beat in enumerate(beats):
                    if beat.output().count(sent_line) > counts[index]:
                        leader = index
                        break
                if leader is not None:
                    break
                time.sleep(0.1)
        if leader is not None:
            # After the dispatch, not inside it: once the run is on the ledger (the message
            # left), before beat saves last_run_at. A kill between the slot claim and the
            # publish (a few ms) loses that slot instead: at most once, by design.
            wait_until = time.monotonic() + 10
            while entries.count() < runs_before + 1 and time.monotonic() < wait_until:
                time.sleep(0.05)
            beats[leader].kill()
            killed += 1
            beats[leader] = Beat(ctx.tmp / f"{run}-beat{leader + 1}-restarted.log", env)
        while time.monotonic() < deadline:
            time.sleep(1)
        # Stop 20 s into a minute, so the last counted slot had time to run.
        while datetime.now(UTC).second < 20:
            time.sleep(0.5)
        stopped = datetime.now(UTC)
    finally:
        for beat in beats:
            beat.stop()
        time.sleep(3)
        worker.stop()
    per_minute, unfinished = ledger_minutes(alias, run)
    slots = minute_boundaries(created, stopped)
    blocked = sum(
        path.read_text(errors="replace").count("was already sent for this slot")
        for path in ctx.tmp.glob(f"{run}-beat*.log")
    )
    return [
        {
            "scenario": "6 two beats",
            "broker": broker.split("://")[0],
            "policy": "crontab * * * * *",
            "tasks": len(slots),
            "executed": sum(per_minute[slot] for slot in slots),
            "ran twice": sum(1 for count in per_minute.values() if count > 1),
            "lost": sum(1 for slot in slots if not per_minute[slot]) + unfinished,
            "note": (
                f"{TWO_BEATS_MINUTES} min; tasks = slots, executed = runs, lost = slots missed; "
                f"leader SIGKILLed after a send {killed}x; {blocked} resend(s) refused by slot key"
            ),
        }
    ]


# 6b. Beat SIGKILLed just after a dispatch --------------------------------------------------


def run_beat_kill(ctx: Context) -> list[dict]:
    """One beat, a crontab every two minutes, SIGKILL after the send, restart a minute later.

    django-celery-beat writes last_run_at every few minutes only, so the restarted beat reads a
    stale one and finds the slot it already sent due again (a catch-up run). The restart comes
    after the slot's minute is over, where a key on the minute of the send would not catch it.
    """
    broker = redis_broker(ctx)
    if broker is None:
        return [{"scenario": "6 beat SIGKILL", "note": "no broker reachable: skipped"}]
    alias, url = scenario_database(ctx, "beatkill")
    run = f"beatkill-{uuid.uuid4().hex[:8]}"
    queue, name = f"chaos-{run}", f"chaos-{run}"
    created = add_crontab(alias, name, run, queue, minute="*/2", timezone="UTC").date_changed
    quiet_other_schedules(alias, keep=name)
    worker = Worker(broker, queue, "beatkill", ctx.tmp / f"{run}-worker.log", {"DATABASE_URL": url})
    env = {"DATABASE_URL": url, "CELERY_BROKER_URL": broker, "BEAT_LEADER_TTL": LEADER_TTL}
    log = ctx.tmp / f"{run}-beat.log"
    sent_line = f"Sending due task {name}"
    from reliability.models import LedgerEntry

    entries = LedgerEntry.objects.using(alias).filter(run=run)
    kills = 0
    beat = Beat(log, env)
    quiet_other_schedules(alias, keep=name, installed=True)
    try:
        # A beat saves last_run_at right after its first send, then every three minutes: the
        # kill comes after its second send (two minutes later), once that run is on the ledger.
        if beat.wait_for(sent_line, 400, count=2):
            deadline = time.monotonic() + 30
            while entries.count() < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            beat.kill()
            kills += 1
            killed_at = datetime.now(UTC)
            # Restart past the slot's minute, before the next slot.
            while datetime.now(UTC) < killed_at.replace(second=0) + timedelta(seconds=65):
                time.sleep(0.5)
            before = entries.count()
            beat = Beat(log, env)
            # Wait for the next regular slot after the restart.
            deadline = time.monotonic() + 150
            while entries.count() <= before and time.monotonic() < deadline:
                time.sleep(0.5)
        time.sleep(5)
        stopped = datetime.now(UTC)
    finally:
        beat.stop()
        time.sleep(3)
        worker.stop()
    per_minute, unfinished = ledger_minutes(alias, run)
    # Runs belong to the even minute they were sent for; a catch-up lands in the odd one.
    per_slot: Counter = Counter()
    for minute, count in per_minute.items():
        per_slot[minute - timedelta(minutes=minute.minute % 2)] += count
    slots = [m for m in minute_boundaries(created, stopped) if m.minute % 2 == 0]
    output = log.read_text(errors="replace")
    return [
        {
            "scenario": "6 beat SIGKILL after send",
            "broker": broker.split("://")[0],
            "policy": "crontab */2 * * * *",
            "tasks": len(slots),
            "executed": sum(per_minute.values()),
            "ran twice": sum(1 for count in per_slot.values() if count > 1),
            "lost": sum(1 for slot in slots if not per_slot[slot]) + unfinished,
            "note": (
                f"tasks = slots, lost = slots missed; {kills} SIGKILL right after the 2nd send, "
                "restart 1 min later; "
                f"{output.count('was already sent for this slot')} catch-up send(s) refused"
            ),
        }
    ]


# 7. Time zone change -----------------------------------------------------------------------


def run_timezone(ctx: Context) -> list[dict]:
    """A beat restarted under another TIME_ZONE: reset by itself, crontabs keep their hour.

    Two crontabs in Europe/Berlin: one for the hour it is now in Berlin (must run), one for the
    hour it is now in the beat's TIME_ZONE (must not: that would be the crontab read in the
    wrong zone).
    """
    broker = redis_broker(ctx)
    if broker is None:
        return [{"scenario": "7 time zone change", "note": "no broker reachable: skipped"}]
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    from operations.models import BeatState
    from reliability.models import LedgerEntry

    alias, url = scenario_database(ctx, "tz")
    run = f"tz-{uuid.uuid4().hex[:8]}"
    queue = f"chaos-{run}"
    berlin = ZoneInfo("Europe/Berlin")
    zones = ["Asia/Shanghai", "America/New_York"]
    window = [datetime.now(UTC) + timedelta(minutes=m) for m in range(0, 6)]

    def hours(zone: ZoneInfo) -> set[int]:
        return {moment.astimezone(zone).hour for moment in window}

    right = hours(berlin)
    wrong = (hours(ZoneInfo(zones[0])) | hours(ZoneInfo(zones[1]))) - right
    PeriodicTask.objects.using(alias).filter(name__startswith="chaos-").delete()
    tasks = {}
    for label, hour_set in (("right", right), ("wrong", wrong)):
        schedule = CrontabSchedule.objects.using(alias).create(
            minute="*", hour=",".join(map(str, sorted(hour_set))), timezone="Europe/Berlin"
        )
        tasks[label] = PeriodicTask.objects.using(alias).create(
            name=f"chaos-{run}-{label}",
            task=LEDGER_TASK,
            crontab=schedule,
            args=json.dumps([f"{run}-{label}"]),
            queue=queue,
        )
    quiet_other_schedules(alias, keep="")
    PeriodicTask.objects.using(alias).filter(name__startswith=f"chaos-{run}").update(enabled=True)
    worker = Worker(broker, queue, "tz", ctx.tmp / f"{run}-worker.log", {"DATABASE_URL": url})
    right_runs = LedgerEntry.objects.using(alias).filter(run=f"{run}-right")
    resets = []
    ran_in = []
    try:
        for zone in zones:
            env = {
                "DATABASE_URL": url,
                "CELERY_BROKER_URL": broker,
                "BEAT_LEADER_TTL": LEADER_TTL,
                "DJANGO_TIME_ZONE": zone,
            }
            before = right_runs.count()
            beat = Beat(ctx.tmp / f"{run}-beat-{zone.replace('/', '-')}.log", env)
            quiet_other_schedules(alias, keep="", installed=True)
            PeriodicTask.objects.using(alias).filter(name__startswith=f"chaos-{run}").update(
                enabled=True
            )
            deadline = time.monotonic() + 100
            while right_runs.count() <= before and time.monotonic() < deadline:
                time.sleep(1)
            ran_in.append(right_runs.count() > before)
            beat.stop()
            resets.append(f"TIME_ZONE changed from {zones[0]} to {zone}" in beat.output())
        time.sleep(3)
    finally:
        worker.stop()
    remembered = BeatState.objects.using(alias).filter(key="time_zone").first()
    wrong_runs = LedgerEntry.objects.using(alias).filter(run=f"{run}-wrong").count()
    reset_done = resets[-1] and remembered is not None and remembered.value == zones[-1]
    return [
        {
            "scenario": "7 TIME_ZONE change",
            "broker": broker.split("://")[0],
            "policy": f"{zones[0]} -> {zones[1]}",
            "tasks": right_runs.count() + wrong_runs,
            "executed": right_runs.count(),
            "errors": wrong_runs,
            "note": (
                f"errors = runs at the wrong hour; reset done: {'yes' if reset_done else 'NO'}; "
                f"ran under each zone: {'yes' if all(ran_in) else 'NO'}"
            ),
        }
    ]


# 7b. Daylight saving time, controlled clock ------------------------------------------------


def simulate_daily(
    hour: int,
    minute: int,
    zone: str,
    start: datetime,
    days: int,
    step: timedelta = timedelta(seconds=30),
    crash_after: timedelta | None = timedelta(seconds=90),
) -> Counter:
    """Runs per local day of a daily crontab, driving the product scheduler's due logic.

    The entries are django-celery-beat's ModelEntry (what the DatabaseScheduler ticks) with
    the clock replaced; a due entry is sent only if the product's claim_slot gives it its slot.
    With `crash_after`, every send by a beat that was not just restarted is followed by a beat
    SIGKILL before last_run_at is saved and a restart `crash_after` later, which reads the stale
    last_run_at and finds the slot due again (the worst case).
    """
    from django_celery_beat.models import CrontabSchedule, PeriodicTask
    from django_celery_beat.schedulers import ModelEntry

    from operations import beat
    from operations.models import BeatSlot

    tz = ZoneInfo(zone)
    clock = [start]

    class ClockEntry(ModelEntry):
        def __init__(self, model, app=None) -> None:
            super().__init__(model, app)
            self.schedule.nowfun = lambda: clock[0].astimezone(self.schedule.tz)

        def _default_now(self) -> datetime:
            return clock[0].astimezone(self.app.timezone)

    name = f"chaos-dst-{uuid.uuid4().hex[:8]}"
    schedule = CrontabSchedule(minute=str(minute), hour=str(hour), timezone=zone)
    task = PeriodicTask(name=name, task=LEDGER_TASK, crontab=schedule, last_run_at=start)
    entry = ClockEntry(task)
    saved_last_run = start
    restart_at = None
    restarted = False
    runs: Counter = Counter()
    end = start + timedelta(days=days)
    try:
        while clock[0] < end:
            if restart_at is not None and clock[0] >= restart_at:
                task.last_run_at = saved_last_run
                entry, restart_at, restarted = ClockEntry(task), None, True
            due, _ = entry.is_due()
            if due:
                previous = entry
                entry = next(entry)  # reserve(): last_run_at = now, in memory only
                if beat.claim_slot(previous.name, previous.schedule, clock[0]):
                    runs[clock[0].astimezone(tz).date()] += 1
                    if crash_after is not None and not restarted:
                        restart_at = clock[0] + crash_after
                        continue
                saved_last_run, restarted = task.last_run_at, False
            clock[0] += step
    finally:
        BeatSlot.objects.filter(task_name=name).delete()
    return runs


DST_CASES = [
    # (zone, spring forward, fall back): 02:30 does not exist in spring, happens twice in autumn.
    ("Europe/Berlin", date(2026, 3, 29), date(2026, 10, 25)),
    ("America/New_York", date(2026, 3, 8), date(2026, 11, 1)),
]


def run_dst(ctx: Context) -> list[dict]:
    rows = []
    for zone, spring, autumn in DST_CASES:
        tz = ZoneInfo(zone)
        checked = 0
        bad: list[str] = []
        for hour, minute in ((2, 30), (9, 0)):
            for change in (spring, autumn):
                first = change - timedelta(days=5)
                start = datetime.combine(first, datetime.min.time(), tzinfo=tz).astimezone(UTC)
                runs = simulate_daily(hour, minute, zone, start, days=10)
                for offset in range(10):
                    day = first + timedelta(days=offset)
                    checked += 1
                    if runs[day] != 1:
                        bad.append(f"{day} {hour:02}:{minute:02} x{runs[day]}")
        rows.append(
            {
                "scenario": "7 DST daily crontab",
                "policy": f"{zone} 02:30 + 09:00",
                "tasks": checked,
                "errors": len(bad),
                "note": "tasks = local days checked, errors = days with runs != 1; "
                "controlled clock, 30 s steps, beat SIGKILLed after each scheduled send"
                + (f"; {', '.join(bad[:4])}" if bad else ""),
            }
        )
    return rows


SCENARIOS = {
    "two-beats": run_two_beats,
    "beat-kill": run_beat_kill,
    "timezone": run_timezone,
    "dst": run_dst,
}
# Minutes of real beats waiting for crontab minutes: beside the others.
BACKGROUND = {"two-beats", "beat-kill"}
