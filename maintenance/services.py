"""The maintenance jobs as plain functions; tasks.py only runs them on a worker.

Each job returns an Outcome; run_job() records it (or the failure) on a MaintenanceRun row, so
the admin and the app's page show what every run did, whoever started it.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.db import DatabaseCache
from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.db.models import Model, QuerySet
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django_celery_results.models import GroupResult, TaskResult

from taskconsole.services import prune_task_records
from taskconsole.signals import Cancellation

from . import summaries
from .models import Job, MaintenanceRun, RunStatus

logger = logging.getLogger(__name__)


class Progress(Protocol):
    """Called with the number of rows deleted so far, so a long run shows how far it got.

    `expected`: how many the job expects to delete in all, or 0 when it cannot tell.
    """

    def __call__(self, deleted: int, expected: int = 0, /) -> None: ...


Report = Callable[[int, int], None]
"""Where a run also reports its progress (deleted, expected): the task console."""

# A backup this job wrote: the database vendor and a UTC timestamp, so names sort by age.
# Rotation deletes only files whose names match, never anything else in BACKUP_DIR.
BACKUP_NAME = re.compile(r"^db-(?P<vendor>[a-z0-9]+)-(?P<stamp>\d{8}T\d{12}Z)\.(?:sqlite3|dump)$")

# A backup that lacks these is not a backup of this product's database.
EXPECTED_TABLES = (
    "django_migrations",
    TaskResult._meta.db_table,
    MaintenanceRun._meta.db_table,
)

# Below the backup task's soft time limit, so a hung pg_dump is stopped and reported first.
PG_DUMP_TIMEOUT = 20 * 60
PG_RESTORE_LIST_TIMEOUT = 5 * 60


class JobFailed(Exception):
    """A job could not do its work; the message tells the person reading the run why."""


@dataclass
class Outcome:
    """What a job did, as recorded on its MaintenanceRun."""

    summary: str
    deleted_count: int | None = None
    backup_path: str = ""
    backup_size: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


# RUNS
# ------------------------------------------------------------------------------
def run_job(
    job: Job,
    run_id: int | None = None,
    task_id: str = "",
    lost_after: timedelta | None = None,
    report: Report | None = None,
) -> MaintenanceRun:
    """Run one job and record it on the run `run_id` (queued by a person) or on a new run.

    A failure is recorded on the run and then raised again, so the task's result says FAILURE
    as well. `lost_after`: runs of this job still RUNNING after that long lost their worker
    (a hard time limit kills the process before it can write anything) and are marked failed.
    `report(deleted, expected)` is told the progress the run row is given.
    """
    job = Job(job)
    if lost_after is not None:
        fail_lost_runs(job, lost_after)
    run = start_run(job, run_id, task_id)

    def progress(deleted: int, expected: int = 0, /) -> None:
        MaintenanceRun.objects.filter(pk=run.pk).update(deleted_count=deleted)
        if report is not None:
            report(deleted, expected)

    try:
        outcome = JOBS[job](progress)
    except JobFailed as exc:
        finish_failed(run, str(exc))
        raise
    except SoftTimeLimitExceeded:
        finish_failed(run, _(summaries.TIME_LIMIT), failure=summaries.TIME_LIMIT)
        raise
    except Exception as exc:
        logger.exception("Maintenance job %s (run %s) failed", job, run.pk)
        finish_failed(run, f"{type(exc).__name__}: {exc}")
        raise
    run.status = RunStatus.SUCCEEDED
    run.finished_at = timezone.now()
    run.summary = outcome.summary
    run.deleted_count = outcome.deleted_count
    run.backup_path = outcome.backup_path
    run.backup_size = outcome.backup_size
    run.details = outcome.details
    run.save()
    return run


def start_run(job: Job, run_id: int | None, task_id: str = "") -> MaintenanceRun:
    run = MaintenanceRun.objects.filter(pk=run_id, job=job).first() if run_id else None
    if run is None:
        # Beat starts periodic runs with no row; a run deleted while queued gets a new one.
        run = MaintenanceRun(job=job)
    run.status = RunStatus.RUNNING
    run.started_at = timezone.now()
    run.finished_at = None
    if task_id:
        run.task_id = task_id
    run.save()
    return run


def finish_failed(run: MaintenanceRun, summary: str, failure: str = "") -> None:
    """`failure`: one of maintenance.summaries' fixed failure texts, untranslated."""
    run.status = RunStatus.FAILED
    run.finished_at = timezone.now()
    run.summary = summary
    details = {k: v for k, v in (run.details or {}).items() if k != summaries.FAILURE_KEY}
    if failure:
        details[summaries.FAILURE_KEY] = failure
    run.details = details
    # Only these fields: deleted_count holds the progress written while the job ran.
    run.save(update_fields=["status", "finished_at", "summary", "details"])


#: The tasks that run a job (maintenance.tasks, each named after its job).
JOB_TASKS = frozenset(f"maintenance.tasks.{job}" for job in Job.values)


def record_cancelled(cancellation: Cancellation) -> bool:
    """The run's task was cancelled, stopped or expired: the run fails with that reason
    instead of staying queued (or running) for ever. True if a run was waiting for it."""
    # Stopped while it ran: whatever it was doing. Otherwise only a run still queued: a worker
    # may have started it a moment before the console's word, and it runs to its end.
    run = MaintenanceRun.objects.filter(
        task_id=cancellation.task_id,
        status__in=(
            [RunStatus.QUEUED, RunStatus.RUNNING] if cancellation.terminated else [RunStatus.QUEUED]
        ),
    ).first()
    if run is None:
        return False
    failure = cancellation.reason(summaries.EXPIRED, summaries.STOPPED, summaries.CANCELLED)
    # In the site's language, as a worker stores summaries; readers see theirs.
    with translation.override(settings.LANGUAGE_CODE):
        finish_failed(run, _(failure), failure)
    return True


def fail_lost_runs(job: Job, lost_after: timedelta) -> int:
    return MaintenanceRun.objects.filter(
        job=job, status=RunStatus.RUNNING, started_at__lt=timezone.now() - lost_after
    ).update(
        status=RunStatus.FAILED,
        finished_at=timezone.now(),
        summary=_(summaries.WORKER_LOST),
        details={summaries.FAILURE_KEY: summaries.WORKER_LOST},
    )


def delete_in_batches(
    queryset: QuerySet[Model],
    batch_size: int,
    progress: Progress | None = None,
    already_deleted: int = 0,
) -> int:
    """Delete the queryset's rows a batch at a time, committing after each batch.

    Selecting a batch of ids and deleting by primary key keeps every transaction, and the locks
    it holds, short: the workers that write new rows into the same table wait for one batch at
    most, never for the whole prune.
    """
    model = queryset.model
    db = router.db_for_write(model)
    batch_size = max(batch_size, 1)
    total = 0
    while True:
        with transaction.atomic(using=db):
            ids = list(queryset.using(db).order_by().values_list("pk", flat=True)[:batch_size])
            if not ids:
                return total
            deleted, _per_model = model._base_manager.using(db).filter(pk__in=ids).delete()
        total += deleted
        if progress is not None:
            progress(already_deleted + total)


# SESSIONS AND CACHE
# ------------------------------------------------------------------------------
def clear_expired(progress: Progress | None = None) -> Outcome:
    """Delete expired sessions (the session engine's own clear_expired) and cache entries."""
    sessions, cleared = clear_expired_sessions()
    if progress is not None and sessions:
        progress(sessions)
    cache_entries, backend, table = clear_expired_cache_entries(
        progress, already_deleted=sessions or 0
    )
    counted = [n for n in (sessions, cache_entries) if n is not None]
    details = summaries.kept(
        {
            "sessions": sessions,
            "cache_entries": cache_entries,
            "session_engine": settings.SESSION_ENGINE,
            "sessions_cleared": cleared,
            "cache_backend": backend,
            "cache_table": table,
        }
    )
    return Outcome(
        summary=summaries.clear_expired(details),
        deleted_count=sum(counted) if counted else None,
        details=details,
    )


def clear_expired_sessions() -> tuple[int | None, bool]:
    """How many expired sessions were deleted (None: not counted), and whether the engine
    could clear them at all."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    get_model_class = getattr(store, "get_model_class", None)
    expired = None
    if get_model_class is not None:
        # clear_expired() does not say how many it deleted; count them first for the report.
        expired = get_model_class().objects.filter(expire_date__lt=timezone.now()).count()
    try:
        store.clear_expired()
    except NotImplementedError:
        return None, False
    return expired, True


def clear_expired_cache_entries(
    progress: Progress | None = None, already_deleted: int = 0
) -> tuple[int | None, str, str]:
    """How many expired entries were deleted, and the cache backend that was skipped (not a
    database cache) or else "" and the cache's table."""
    cache = caches["default"]
    if not isinstance(cache, DatabaseCache):
        return None, f"{type(cache).__module__}.{type(cache).__name__}", ""
    db = router.db_for_write(cache.cache_model_class)
    connection = connections[db]
    quote = connection.ops.quote_name
    table, key_column, expires_column = (
        quote(cache.cache_model_class._meta.db_table),
        quote("cache_key"),
        quote("expires"),
    )
    # As DatabaseCache itself compares: whole seconds, adapted for the column.
    now = connection.ops.adapt_datetimefield_value(timezone.now().replace(microsecond=0))
    batch_size = max(settings.PRUNE_BATCH_SIZE, 1)
    total = 0
    while True:
        with transaction.atomic(using=db), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {key_column} FROM {table} WHERE {expires_column} < %s LIMIT %s",
                [now, batch_size],
            )
            keys = [row[0] for row in cursor.fetchall()]
            if not keys:
                break
            placeholders = ", ".join(["%s"] * len(keys))
            # Checked again: a key set anew since the SELECT has a later expiry and stays.
            cursor.execute(
                f"DELETE FROM {table} WHERE {key_column} IN ({placeholders}) "
                f"AND {expires_column} < %s",
                [*keys, now],
            )
            total += cursor.rowcount
        if progress is not None:
            progress(already_deleted + total)
    return total, "", cache.cache_model_class._meta.db_table


# BACKUPS
# ------------------------------------------------------------------------------
def backup_dir() -> Path:
    return Path(str(settings.BACKUP_DIR))


def backup_database(progress: Progress | None = None) -> Outcome:
    """Back up the default database into BACKUP_DIR, verify it, then keep the newest BACKUP_KEEP.

    The file is written under a temporary name and renamed only once it verified, so a failed
    backup never counts as one of the kept ones and the older backups stay untouched.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    vendor = connection.vendor
    if vendor == "sqlite":
        extension, make, verify = "sqlite3", backup_sqlite, verify_sqlite_backup
    elif vendor == "postgresql":
        extension, make, verify = "dump", backup_postgresql, verify_postgresql_backup
    else:
        raise JobFailed(
            _("Backups of %(vendor)s databases are not supported: only SQLite and PostgreSQL.")
            % {"vendor": vendor}
        )
    directory = backup_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    final = directory / f"db-{vendor}-{stamp}.{extension}"
    partial = final.with_name(final.name + ".partial")
    # Backups hold password hashes and sessions: readable by the worker's user only.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        make(connection.settings_dict, partial)
        tables = verify(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(final)
    removed = rotate_backups(directory, vendor, settings.BACKUP_KEEP)
    size = final.stat().st_size
    details = summaries.kept(
        {
            "vendor": connection.display_name,
            "path": str(final),
            "size": size,
            "tables": len(tables),
            "keep": max(settings.BACKUP_KEEP, 1),
            "removed": [path.name for path in removed],
        }
    )
    return Outcome(
        summary=summaries.backup_database(details),
        backup_path=str(final),
        backup_size=size,
        details=details,
    )


def rotate_backups(directory: Path, vendor: str, keep: int) -> list[Path]:
    """Delete all but the newest `keep` (at least 1) backups this job wrote for `vendor`."""
    ours = []
    for path in directory.iterdir():
        match = BACKUP_NAME.match(path.name)
        if match and match["vendor"] == vendor and path.is_file():
            ours.append(path)
    ours.sort(key=lambda path: path.name, reverse=True)
    removed = ours[max(keep, 1) :]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def missing_tables(found: set[str]) -> list[str]:
    return [table for table in EXPECTED_TABLES if table not in found]


def backup_sqlite(settings_dict: Mapping[str, Any], target: Path) -> None:
    """Copy a live SQLite database with its online backup API (consistent while others write)."""
    name = str(settings_dict["NAME"])
    if not name or name == ":memory:" or "mode=memory" in name:
        raise JobFailed(_("An in-memory SQLite database cannot be backed up."))
    source_path = Path(name)
    if not source_path.is_file():
        raise JobFailed(_("The SQLite database file %(path)s does not exist.") % {"path": name})
    try:
        with (
            closing(sqlite3.connect(source_path, timeout=20)) as source,
            closing(sqlite3.connect(target)) as copy,
        ):
            source.backup(copy)
            # The copy inherits WAL mode; a backup should be one self-contained file.
            copy.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as exc:
        raise JobFailed(_("The SQLite backup failed: %(error)s") % {"error": exc}) from exc


def verify_sqlite_backup(path: Path) -> list[str]:
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            tables = {
                row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
    except sqlite3.Error as exc:
        raise JobFailed(
            _(
                "The new backup does not open as a SQLite database (%(error)s); "
                "older backups were kept."
            )
            % {"error": exc}
        ) from exc
    if check != "ok":
        raise JobFailed(
            _(
                "The new backup failed SQLite's integrity check (%(result)s); "
                "older backups were kept."
            )
            % {"result": check}
        )
    if missing := missing_tables(tables):
        raise JobFailed(
            _("The new backup lacks the tables %(tables)s; older backups were kept.")
            % {"tables": ", ".join(missing)}
        )
    return sorted(tables)


def client_program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise JobFailed(
            _(
                "%(program)s was not found on the PATH of the worker that ran this job. Install "
                "the PostgreSQL client tools (the server's major version or newer) where the "
                "worker runs; no backup was made."
            )
            % {"program": name}
        )
    return path


def postgresql_argv(settings_dict: Mapping[str, Any]) -> list[str]:
    """Connection arguments for the PostgreSQL client programs. Never the password."""
    argv = []
    if settings_dict.get("HOST"):
        argv.append(f"--host={settings_dict['HOST']}")
    if settings_dict.get("PORT"):
        argv.append(f"--port={settings_dict['PORT']}")
    if settings_dict.get("USER"):
        argv.append(f"--username={settings_dict['USER']}")
    return argv


def postgresql_env(settings_dict: Mapping[str, Any]) -> dict[str, str]:
    """The client programs' environment: the password goes here, where `ps` cannot show it."""
    env = os.environ.copy()
    if settings_dict.get("PASSWORD"):
        env["PGPASSWORD"] = str(settings_dict["PASSWORD"])
    options = settings_dict.get("OPTIONS") or {}
    for option, variable in (
        ("sslmode", "PGSSLMODE"),
        ("sslrootcert", "PGSSLROOTCERT"),
        ("sslcert", "PGSSLCERT"),
        ("sslkey", "PGSSLKEY"),
        ("passfile", "PGPASSFILE"),
    ):
        if options.get(option):
            env[variable] = str(options[option])
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return env


def client_error(result: subprocess.CompletedProcess[str]) -> str:
    text = (result.stderr or result.stdout or "").strip()
    return text[-2000:] or _("no message")


def backup_postgresql(settings_dict: Mapping[str, Any], target: Path) -> None:
    """pg_dump in its custom format (compressed, restorable table by table with pg_restore)."""
    argv = [
        client_program("pg_dump"),
        "-Fc",
        "--no-password",
        f"--file={target}",
        *postgresql_argv(settings_dict),
        f"--dbname={settings_dict['NAME']}",
    ]
    logger.info("Running %s", shlex.join(argv))
    try:
        result = subprocess.run(
            argv,
            env=postgresql_env(settings_dict),
            capture_output=True,
            text=True,
            timeout=PG_DUMP_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise JobFailed(
            _("pg_dump did not finish within %(seconds)d s and was stopped; no backup was made.")
            % {"seconds": PG_DUMP_TIMEOUT}
        ) from exc
    if result.returncode != 0:
        raise JobFailed(
            _("pg_dump failed with exit code %(code)d; no backup was made: %(error)s")
            % {"code": result.returncode, "error": client_error(result)}
        )


# One line of `pg_restore --list`: "215; 1259 16386 TABLE public django_migrations postgres".
PG_LIST_ENTRY = re.compile(
    r"^\d+; \d+ \d+ (?P<kind>TABLE DATA|TABLE) (?P<schema>\S+) (?P<name>\S+)"
)


def verify_postgresql_backup(path: Path) -> list[str]:
    argv = [client_program("pg_restore"), "--list", str(path)]
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=PG_RESTORE_LIST_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise JobFailed(
            _("pg_restore --list did not finish in time; older backups were kept.")
        ) from exc
    if result.returncode != 0:
        raise JobFailed(
            _("The new backup does not open with pg_restore (%(error)s); older backups were kept.")
            % {"error": client_error(result)}
        )
    tables: set[str] = set()
    with_data: set[str] = set()
    for line in result.stdout.splitlines():
        entry = PG_LIST_ENTRY.match(line)
        if entry:
            (with_data if entry["kind"] == "TABLE DATA" else tables).add(entry["name"])
    if missing := missing_tables(tables & with_data):
        raise JobFailed(
            _("The new backup lacks the tables %(tables)s; older backups were kept.")
            % {"tables": ", ".join(missing)}
        )
    return sorted(tables)


# TASK RESULTS
# ------------------------------------------------------------------------------
def prune_results(progress: Progress | None = None) -> Outcome:
    """Delete task and group results finished more than RESULTS_MAX_AGE_DAYS ago, in batches,
    then the task console's finished records older than TASKCONSOLE_MAX_AGE_DAYS."""
    days = settings.RESULTS_MAX_AGE_DAYS
    cutoff = timezone.now() - timedelta(days=days)
    batch_size = settings.PRUNE_BATCH_SIZE
    old_tasks = TaskResult.objects.filter(date_done__lt=cutoff)
    old_groups = GroupResult.objects.filter(date_done__lt=cutoff)
    if days <= 0:
        # Kept forever (RESULTS_MAX_AGE_DAYS=0, or the tutorial's CELERY_RESULT_EXPIRES=0).
        old_tasks, old_groups = old_tasks.none(), old_groups.none()
    step = None
    if progress is not None:
        # Counted once, on the date_done indexes, so the console can show how far it got.
        step = expecting(progress, old_tasks.count() + old_groups.count())
    tasks = delete_in_batches(old_tasks, batch_size, step)
    groups = delete_in_batches(old_groups, batch_size, step, tasks)
    records, record_days = prune_console_records(batch_size)
    details = summaries.kept(
        {
            "task_results": tasks,
            "group_results": groups,
            "console_records": records,
            "cutoff": cutoff.isoformat(),
            "days": days,
            "batch": max(batch_size, 1),
            "record_days": record_days,
        }
    )
    return Outcome(
        summary=summaries.prune_results(details),
        deleted_count=tasks + groups + records,
        details=details,
    )


def expecting(progress: Progress, expected: int) -> Progress:
    """`progress`, told that `expected` rows are to be deleted in all (more if it finds more)."""

    def step(deleted: int, _expected: int = 0, /) -> None:
        progress(deleted, max(expected, deleted))

    return step


def prune_console_records(batch_size: int) -> tuple[int, int]:
    """The task console's finished records older than TASKCONSOLE_MAX_AGE_DAYS, in batches.

    Returns how many were deleted and the age in days.
    """
    days = getattr(settings, "TASKCONSOLE_MAX_AGE_DAYS", settings.RESULTS_MAX_AGE_DAYS)
    return prune_task_records(days, batch_size=max(batch_size, 1)), days


JOBS: dict[Job, Callable[[Progress | None], Outcome]] = {
    Job.CLEAR_EXPIRED: clear_expired,
    Job.BACKUP_DATABASE: backup_database,
    Job.PRUNE_RESULTS: prune_results,
}
