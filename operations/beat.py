"""The tutorial's DatabaseScheduler, made safe to run twice and to restart at any moment.

- A heartbeat, so celery_check and /readyz can tell beat is alive.
- A leader lease (BeatLock): with two beats running, only the holder sends due tasks; the other
  takes over when the lease expires (BEAT_LEADER_TTL seconds after the leader stops renewing it).
- A per-slot key (BeatSlot): each (periodic task, slot) is sent once. django-celery-beat writes
  last_run_at only every few minutes, so a beat killed just after a dispatch would otherwise send
  the same slot again on restart; a new leader with a stale schedule would too.
- The schedule is reset by itself when TIME_ZONE changes (the tutorial's manual step).
- A row beat cannot use (a schedule Celery cannot build or compute, args/kwargs/headers of the
  wrong JSON shape) is skipped with one error line naming it, logged again only when the row
  changes; the other periodic tasks go on. django-celery-beat let such a row crash beat at each
  start (an OverflowError, a TypeError) until someone disabled it by hand.
- Only the leader writes to the schedule tables: CELERY_BEAT_SCHEDULE's entries (and the time
  zone reset) are written when a beat starts holding the lease or takes it over. A beat that
  starts while another holds the lease writes nothing, so it cannot undo an admin edit of a
  settings entry the running leader already follows; it says once that it stands by.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time

from celery import beat as celery_beat
from celery.schedules import crontab, schedstate
from celery.schedules import schedule as interval_schedule
from django.conf import settings
from django.db import DatabaseError, IntegrityError, close_old_connections, transaction
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler as BaseDatabaseScheduler
from django_celery_beat.schedulers import ModelEntry as BaseModelEntry
from kombu.utils.json import loads

from . import schedule_checks
from .broker_errors import BROKER_ERRORS, unanswered
from .models import BeatLock, BeatSlot, BeatState, Heartbeat

logger = logging.getLogger(__name__)

BEAT_HEARTBEAT = "beat"
BEAT_LOCK = "beat-leader"
TIME_ZONE_KEY = "time_zone"
#: When the beat that held the lease stopped cleanly (an ISO datetime).
STOPPED_AT_KEY = "stopped_at"
#: How far back a crontab's latest time is looked for: every-hour crontabs minute by minute,
#: the others day by day. Older than that, the minute of the send is the slot.
SLOT_LOOKBACK_MINUTES = 8 * 24 * 60
SLOT_LOOKBACK_DAYS = 400
#: How often beat tries again an entry whose next run could not be computed (seconds). It
#: says so once; the row's next change reloads the schedule anyway.
BAD_ROW_RECHECK = 300.0


def _setting(name: str, default: float) -> float:
    return getattr(settings, name, default)


def acquire_lease(owner: str, ttl: float, now: datetime | None = None) -> bool:
    """Take or renew the leader lease; True when `owner` holds it afterwards."""
    now = now or timezone.now()
    expires = now + timedelta(seconds=ttl)
    with transaction.atomic():
        taken = BeatLock.objects.filter(
            Q(name=BEAT_LOCK) & (Q(owner=owner) | Q(expires_at__lt=now))
        ).update(owner=owner, expires_at=expires)
    if taken:
        return True
    try:
        with transaction.atomic():
            BeatLock.objects.create(name=BEAT_LOCK, owner=owner, expires_at=expires)
    except IntegrityError:
        return False
    return True


def release_lease(owner: str) -> None:
    BeatLock.objects.filter(name=BEAT_LOCK, owner=owner).delete()


def lease_holder() -> str | None:
    """The owner of the leader lease, None when nobody holds it."""
    return BeatLock.objects.filter(name=BEAT_LOCK).values_list("owner", flat=True).first()


def describe_owner(owner: str) -> str:
    """A lease owner ("host:pid:nonce") as an operator reads it: "pid 1234 on host"."""
    host, _, rest = owner.rpartition(":")
    host, _, pid = host.rpartition(":")
    if host and pid.isdigit() and rest:
        return f"pid {pid} on {host}"
    return owner


def slot_start(schedule: object, now: datetime) -> datetime:
    """The start of the slot `now` falls in: a grid of the interval, the crontab's latest time.

    Intervals are cut on a grid from the Unix epoch, so two beats (or one restarted) agree on
    the slot whatever their own last_run_at. A crontab's slot is its latest scheduled time at
    or before `now`, not the minute of the send: a beat restarted minutes after a dispatch reads
    a stale last_run_at and sends a catch-up run, which must fall in the slot already sent.
    Solar and clocked schedules fire on whole minutes at most once, so the minute is theirs.
    """
    now = now.astimezone(UTC)
    if isinstance(schedule, interval_schedule) and type(schedule) is interval_schedule:
        every = max(schedule.run_every.total_seconds(), 1.0)
        return datetime.fromtimestamp(int(now.timestamp() // every * every), tz=UTC)
    if isinstance(schedule, crontab):
        latest = _latest_crontab_time(schedule, now)
        if latest is not None:
            return latest
    return now.replace(second=0, microsecond=0)


def _matches_day(schedule: crontab, day: date) -> bool:
    return (
        day.month in schedule.month_of_year
        and day.day in schedule.day_of_month
        and day.isoweekday() % 7 in schedule.day_of_week  # crontab counts Sunday as 0
    )


def _latest_crontab_time(schedule: crontab, now: datetime) -> datetime | None:
    """The crontab's latest time at or before `now` (UTC), None if none in the look-back.

    A crontab with fixed hours names wall-clock times: 02:30 in a zone that goes back an hour
    in autumn happens twice but is one slot (the first instant, as Celery reads a wall time),
    and the spring 02:30 that does not exist is the instant Celery fires it at. A crontab for
    every hour names real hours, so the repeated hour's minutes are slots of their own.
    """
    tz = schedule.tz
    minute = now.replace(second=0, microsecond=0)
    if len(schedule.hour) == 24:
        for back in range(SLOT_LOOKBACK_MINUTES):
            candidate = minute - timedelta(minutes=back)
            local = candidate.astimezone(tz)
            if (
                local.minute in schedule.minute
                and local.hour in schedule.hour
                and _matches_day(schedule, local.date())
            ):
                return candidate
        return None
    wall = minute.astimezone(tz).replace(tzinfo=None)
    for back in range(SLOT_LOOKBACK_DAYS):
        day = wall.date() - timedelta(days=back)
        if not _matches_day(schedule, day):
            continue
        for hour in sorted(schedule.hour, reverse=True):
            for at_minute in sorted(schedule.minute, reverse=True):
                candidate = datetime.combine(day, dt_time(hour, at_minute))
                if candidate > wall:
                    continue
                # fold=0: the first of a repeated time, and the pre-change offset in a gap.
                instant = candidate.replace(tzinfo=tz).astimezone(UTC)
                if instant <= minute:
                    return instant
    return None


def slot_key(name: str, schedule: object, now: datetime) -> str:
    return f"{name}@{slot_start(schedule, now):%Y-%m-%dT%H:%M:%SZ}"[:255]


def claim_slot(name: str, schedule: object, now: datetime | None = None) -> str | None:
    """Record that this slot is being sent; None when it was sent already."""
    key = slot_key(name, schedule, now or timezone.now())
    try:
        with transaction.atomic():
            BeatSlot.objects.create(key=key, task_name=name[:200])
    except IntegrityError:
        return None
    return key


def reset_on_time_zone_change(time_zone: str) -> bool:
    """Reset every last_run_at when the time zone differs from the one last seen; True if reset."""
    from .schedules import reset_last_run

    state = BeatState.objects.filter(key=TIME_ZONE_KEY).first()
    if state is not None and state.value == time_zone:
        return False
    changed = state is not None
    if changed:
        count = reset_last_run()
        logger.warning(
            "TIME_ZONE changed from %s to %s: the last run of %d periodic task(s) was reset.",
            state.value,
            time_zone,
            count,
        )
    BeatState.objects.update_or_create(key=TIME_ZONE_KEY, defaults={"value": time_zone})
    return changed


class UnusableRow(ValueError):
    """A periodic task row beat cannot turn into an entry; `reason` says why, in a log line."""

    def __init__(self, reason: str, fingerprint: tuple) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fingerprint = fingerprint


class BadRows:
    """The rows beat skips, each said once per content: an error line at the first skip and
    again only when the row (or its schedule) changes, not at every reload or tick."""

    def __init__(self) -> None:
        self._said: dict[str, tuple] = {}

    def report(self, name: str, reason: str, fingerprint: tuple) -> None:
        if self._said.get(name) == fingerprint:
            return
        self._said[name] = fingerprint
        logger.error(
            "beat: periodic task %r is skipped: %s. The other periodic tasks run; this one runs "
            "once the row is fixed.",
            name,
            reason,
        )

    def forget_all_but(self, names: set[str]) -> None:
        """Forget rows that are gone or disabled: enabled again, they are said again."""
        for name in set(self._said) - names:
            del self._said[name]

    def clear(self) -> None:
        self._said.clear()


BAD_ROWS = BadRows()

_SCHEDULE_FIELDS = ("interval", "crontab", "solar", "clocked")


def _row_fingerprint(model: PeriodicTask) -> tuple:
    """What the row says, its schedule row's values included (editing an interval in place
    changes the task's schedule without saving the task)."""
    return (
        model.task,
        model.args,
        model.kwargs,
        model.headers,
        model.queue,
        model.start_time,
        model.expires,
        _schedule_words(model),
    )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _schedule_words(model: PeriodicTask) -> str:
    """The row's schedule as its columns say it: "interval every=5, period='days'"."""
    for field in _SCHEDULE_FIELDS:
        if getattr(model, f"{field}_id", None) is None:
            continue
        try:
            row = getattr(model, field)
        except Exception:
            return f"{field} #{getattr(model, f'{field}_id')}"
        values = ", ".join(
            f"{key}={value!r}"
            for key, value in vars(row).items()
            if key not in ("_state", "id") and not key.startswith("_")
        )
        return f"{field} {values}"
    return "no schedule"


def check_row(model: PeriodicTask) -> str | None:
    """Why beat cannot use this row's args, kwargs or headers; None when it can.

    django-celery-beat disables a row whose args are not JSON (a save beat does behind the
    admin's back) and crashes on headers that are not an object; a list for kwargs or an
    object for args made each send fail. Checked first, so such a row is skipped instead. (Its
    schedule is checked by building the entry: a second build would double beat's reload.)
    """
    for field, shape in schedule_checks.JSON_SHAPES.items():
        words = "a JSON list" if shape is list else "a JSON object"
        text = getattr(model, field) or ""
        if not text.strip():
            continue
        try:
            value = loads(text)
        except ValueError as exc:
            return f"its {field} is not valid JSON ({_describe(exc)})"
        if not isinstance(value, shape):
            return f"its {field} must be {words}, not {text[:80]!r}"
    return None


class ModelEntry(BaseModelEntry):
    def __init__(self, model, app=None):
        reason = check_row(model)
        if reason is not None:
            raise UnusableRow(reason, (reason, _row_fingerprint(model)))
        try:
            super().__init__(model, app=app)
        except DatabaseError:
            raise
        except Exception as exc:
            reason = f"its schedule cannot be used ({_describe(exc)}; {_schedule_words(model)})"
            raise UnusableRow(reason, (reason, _row_fingerprint(model))) from exc

    def is_due(self):
        """django-celery-beat's is_due; a schedule that cannot compute its next run (an
        interval so long that the last run plus it overflows a datetime, …) is skipped and
        said once, instead of stopping beat at each tick."""
        try:
            return super().is_due()
        except DatabaseError:
            raise
        except Exception as exc:
            reason = (
                f"its next run cannot be computed ({_describe(exc)}; {_schedule_words(self.model)})"
            )
            BAD_ROWS.report(self.name, reason, (reason, _row_fingerprint(self.model)))
            return schedstate(False, BAD_ROW_RECHECK)

    @classmethod
    def from_entry(cls, name, app=None, **entry):
        """A CELERY_BEAT_SCHEDULE entry written to the table only where it differs.

        django-celery-beat saves every entry at every start. The save moves the row's
        date_changed, which is what an interval task that never ran counts from: each restart
        pushed its first run back by up to one interval. (The schedule rows, intervals and
        crontabs, are still saved by django-celery-beat's own to_model_schedule.)
        """
        fields = cls._unpack_fields(**entry)
        task = PeriodicTask._default_manager.filter(name=name).first()
        if task is None:
            task = PeriodicTask._default_manager.create(name=name, **fields)
        else:
            changed = {key: value for key, value in fields.items() if getattr(task, key) != value}
            if changed:
                for key, value in changed.items():
                    setattr(task, key, value)
                task.save()
        return cls(task, app=app)


class DatabaseScheduler(BaseDatabaseScheduler):
    Entry = ModelEntry
    _last_heartbeat = 0.0
    _last_lease = 0.0
    _is_leader = False
    #: Whether this beat wrote CELERY_BEAT_SCHEDULE's entries to the tables since it last led.
    _installed = False
    #: The lease holder this beat last said it stands by for; None while it leads.
    _standing_by_for: str | None = None

    def __init__(self, *args, **kwargs) -> None:
        self.lease_owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        super().__init__(*args, **kwargs)

    def all_as_schedule(self):
        """django-celery-beat's, skipping the rows beat cannot use (said once each)."""
        entries = {}
        enabled = set()
        for model in self.enabled_models():
            enabled.add(model.name)
            try:
                entries[model.name] = self.Entry(model, app=self.app)
            except UnusableRow as exc:
                BAD_ROWS.report(model.name, exc.reason, exc.fingerprint)
            except ValueError:
                pass  # django-celery-beat's own skip
        BAD_ROWS.forget_all_but(enabled)
        return entries

    def setup_schedule(self) -> None:
        """Take the lease if free; only then write the settings' entries (see _lead).

        django-celery-beat writes CELERY_BEAT_SCHEDULE to its tables here, at every start. A
        second beat doing so while the first leads would put back a settings entry that was
        edited in the admin since, and the leader would follow the reset entry.
        """
        self._renew_lease(_setting("BEAT_LEADER_TTL", 30))

    def _install_schedule(self) -> None:
        """What django-celery-beat does at start: write the settings' entries to the tables."""
        try:
            close_old_connections()
            reset_on_time_zone_change(str(self.app.conf.timezone or settings.TIME_ZONE))
        except DatabaseError as exc:
            logger.warning("Could not compare the time zone with the last one: %s", exc)
        super().setup_schedule()
        self._installed = True

    def tick(self, *args, **kwargs) -> float:
        ttl = _setting("BEAT_LEADER_TTL", 30)
        now = time.monotonic()
        if not self._is_leader or now - self._last_lease >= ttl / 3:
            self._renew_lease(ttl)
        interval = super().tick(*args, **kwargs) if self._is_leader else ttl / 3
        if self._is_leader and now - self._last_heartbeat >= settings.BEAT_HEARTBEAT_INTERVAL:
            self._last_heartbeat = now
            self._write_heartbeat()
        return min(interval, settings.BEAT_HEARTBEAT_INTERVAL, ttl / 3)

    def _renew_lease(self, ttl: float) -> None:
        was_leader = self._is_leader
        previous = self._standing_by_for
        holder = None
        try:
            close_old_connections()
            leader = acquire_lease(self.lease_owner, ttl)
            if leader and not was_leader:
                self._lead()
            elif not leader:
                holder = lease_holder()
        except DatabaseError as exc:
            # Without the database nobody can prove leadership: stop sending until it is back.
            logger.warning("Could not renew beat's leader lease: %s", exc)
            leader = False
        self._is_leader = leader
        self._last_lease = time.monotonic()
        if leader:
            self._standing_by_for = None
            if was_leader:
                return
            if previous is None:
                logger.info("beat: %s is the leader and sends due tasks.", self.lease_owner)
            else:
                logger.info(
                    "beat: took over the leader lease from %s; %s now sends due tasks.",
                    describe_owner(previous),
                    self.lease_owner,
                )
            return
        if was_leader:
            logger.warning("beat: %s lost the leader lease; standing by.", self.lease_owner)
        # Said once, and again only when another beat comes to hold the lease: not every tick.
        if holder is not None and holder != previous:
            self._standing_by_for = holder
            logger.info(
                "beat: another beat (%s) holds the leader lease; standing by, "
                "will take over if it stops.",
                describe_owner(holder),
            )

    def _lead(self) -> None:
        """Start sending: write the settings' entries at start or takeover, read the rest afresh.

        A beat that got its own lease back after a database outage, with no other beat having
        held it meanwhile, does not write them again: admin edits made since stay.
        """
        if not self._installed or self._standing_by_for is not None:
            self._install_schedule()
        # Another beat may have sent tasks meanwhile: read last_run_at afresh.
        self._initial_read = True
        self._heap = None

    def apply_entry(self, entry, producer=None):
        # Celery's says "Sending due task" before apply_async decides; here apply_async says it
        # once the slot is claimed, so a slot already sent does not read as sent twice.
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:
            logger.error("Message Error: %s", exc, exc_info=True)

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        try:
            close_old_connections()
            key = claim_slot(entry.name, entry.schedule)
        except DatabaseError as exc:
            logger.warning("beat: cannot record slot of %s, not sending it: %s", entry.name, exc)
            return None
        if key is None:
            logger.info(
                "beat: %s was already sent for this slot; not sending it again.", entry.name
            )
            return None
        # Celery's own words, from its logger, as the tutorial's beat prints them.
        celery_beat.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        try:
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        except Exception as exc:
            if unanswered(exc):
                # The broker may have it (a stopped Redis runs what waited in its socket when it
                # resumes): the slot stays taken, so no other beat sends it a second time.
                logger.error(
                    "beat: %s may not have been sent: the task broker did not answer in time (%s).",
                    entry.name,
                    exc.__context__ or exc,
                )
                return None
            # Not sent: free the slot so the next tick (or the other beat) can send it.
            BeatSlot.objects.filter(key=key).delete()
            # Celery wraps the publish's error in a SchedulingError and logs it with two stack
            # traces; a broker that is away would fill beat's log with them every tick.
            cause = exc if isinstance(exc, BROKER_ERRORS) else exc.__context__
            if not isinstance(cause, BROKER_ERRORS):
                raise
            logger.error(
                "beat: %s was not sent: the task broker did not answer (%s). It is sent at its "
                "next run.",
                entry.name,
                cause,
            )
            return None

    def close(self) -> None:
        try:
            super().close()
        finally:
            with contextlib.suppress(DatabaseError):
                if self._is_leader:
                    # celery_check then says beat stopped, not "running" until the heartbeat
                    # goes stale a minute later. A beat standing by stops nothing.
                    BeatState.objects.update_or_create(
                        key=STOPPED_AT_KEY, defaults={"value": timezone.now().isoformat()}
                    )
                release_lease(self.lease_owner)

    def _write_heartbeat(self) -> None:
        try:
            close_old_connections()
            now = timezone.now()
            Heartbeat.objects.update_or_create(name=BEAT_HEARTBEAT, defaults={"beat_at": now})
            # Slot keys only matter around their slot; two days covers any restart.
            BeatSlot.objects.filter(sent_at__lt=now - timedelta(days=2)).delete()
        except DatabaseError as exc:
            # A database outage must not stop beat; the stale heartbeat reports it instead.
            logger.warning("Could not write beat's heartbeat: %s", exc)
