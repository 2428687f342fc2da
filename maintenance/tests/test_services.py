"""The jobs run in the test process: their edge cases, without a worker."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from django.utils import timezone, translation
from django_celery_results.models import GroupResult, TaskResult

from maintenance import services, summaries
from maintenance.models import Job, MaintenanceRun, RunStatus
from maintenance.services import JobFailed
from taskconsole.models import TaskRecord, TaskStatus
from taskconsole.signals import announce_cancelled

from .helpers import (
    cache_keys,
    insert_task_results,
    make_cache_entries,
    make_group_results,
    make_sessions,
)

pytestmark = pytest.mark.django_db


def backup_name(vendor: str, day: int) -> str:
    extension = "dump" if vendor == "postgresql" else "sqlite3"
    return f"db-{vendor}-202601{day:02d}T030000000000Z.{extension}"


# RUNS
# ------------------------------------------------------------------------------
def test_a_queued_run_is_the_one_that_records_the_outcome() -> None:
    queued = MaintenanceRun.objects.create(job=Job.PRUNE_RESULTS)
    run = services.run_job(Job.PRUNE_RESULTS, run_id=queued.pk, task_id="abc")
    assert run.pk == queued.pk
    queued.refresh_from_db()
    assert queued.status == RunStatus.SUCCEEDED
    assert queued.task_id == "abc"
    assert queued.started_at <= queued.finished_at


def test_a_scheduled_run_gets_a_row_of_its_own() -> None:
    run = services.run_job(Job.PRUNE_RESULTS)
    assert MaintenanceRun.objects.get().pk == run.pk
    assert run.requested_by is None
    assert run.status == RunStatus.SUCCEEDED


def test_runs_that_lost_their_worker_are_marked_failed() -> None:
    lost = MaintenanceRun.objects.create(
        job=Job.BACKUP_DATABASE,
        status=RunStatus.RUNNING,
        started_at=timezone.now() - timedelta(hours=2),
    )
    recent = MaintenanceRun.objects.create(
        job=Job.BACKUP_DATABASE, status=RunStatus.RUNNING, started_at=timezone.now()
    )
    assert services.fail_lost_runs(Job.BACKUP_DATABASE, timedelta(hours=1)) == 1
    lost.refresh_from_db()
    recent.refresh_from_db()
    assert lost.status == RunStatus.FAILED
    assert "worker stopped" in lost.summary
    assert recent.status == RunStatus.RUNNING
    with translation.override("zh-hans"):
        assert "worker" in lost.summary_display
        assert "worker stopped" not in lost.summary_display


def test_a_time_limit_fails_the_run_and_keeps_its_progress(monkeypatch) -> None:
    def interrupted(progress):
        progress(1234)
        raise SoftTimeLimitExceeded()

    monkeypatch.setitem(services.JOBS, Job.PRUNE_RESULTS, interrupted)
    with pytest.raises(SoftTimeLimitExceeded):
        services.run_job(Job.PRUNE_RESULTS)
    run = MaintenanceRun.objects.get()
    assert run.status == RunStatus.FAILED
    assert "time limit" in run.summary
    assert run.deleted_count == 1234
    with translation.override("zh-hans"):
        assert "time limit" not in run.summary_display


def test_an_unexpected_error_fails_the_run_with_its_message(monkeypatch) -> None:
    def broken(progress):
        raise OSError("disk full")

    monkeypatch.setitem(services.JOBS, Job.CLEAR_EXPIRED, broken)
    with pytest.raises(OSError, match="disk full"):
        services.run_job(Job.CLEAR_EXPIRED)
    run = MaintenanceRun.objects.get()
    assert run.status == RunStatus.FAILED
    assert run.summary == "OSError: disk full"


# SESSIONS AND CACHE
# ------------------------------------------------------------------------------
@override_settings(PRUNE_BATCH_SIZE=3)
def test_clear_expired_deletes_only_expired_sessions_and_cache_entries_in_batches() -> None:
    make_sessions(expired=4, fresh=2)
    make_cache_entries(expired=8, fresh=3)
    seen: list[int] = []

    outcome = services.clear_expired(seen.append)

    assert Session.objects.count() == 2
    assert not Session.objects.filter(session_key__startswith="expired").exists()
    assert cache_keys() == {cache.make_key(f"fresh-{i}") for i in range(3)}
    assert outcome.details.items() >= {"sessions": 4, "cache_entries": 8}.items()
    assert outcome.deleted_count == 12
    # Sessions first, then the cache a batch of 3 at a time.
    assert seen == [4, 7, 10, 12]
    assert "4 expired sessions" in outcome.summary
    assert "8 expired cache entries" in outcome.summary


@override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})
def test_a_cache_that_is_not_in_the_database_is_skipped_with_a_reason() -> None:
    make_sessions(expired=1, fresh=1)
    outcome = services.clear_expired()
    assert outcome.details.items() >= {"sessions": 1, "cache_entries": None}.items()
    assert "not a database cache" in outcome.summary
    assert "LocMemCache" in outcome.summary


# TASK RESULTS
# ------------------------------------------------------------------------------
@override_settings(PRUNE_BATCH_SIZE=7, RESULTS_MAX_AGE_DAYS=30)
def test_prune_deletes_results_older_than_the_age_in_batches() -> None:
    insert_task_results("old-", 20, timezone.now() - timedelta(days=31))
    insert_task_results("new-", 3, timezone.now() - timedelta(days=29))
    make_group_results("old-", 5, timezone.now() - timedelta(days=40))
    make_group_results("new-", 2, timezone.now())
    seen: list[tuple[int, int]] = []

    outcome = services.prune_results(lambda deleted, expected=0: seen.append((deleted, expected)))

    assert set(TaskResult.objects.values_list("task_id", flat=True)) == {"new-1", "new-2", "new-3"}
    assert set(GroupResult.objects.values_list("group_id", flat=True)) == {"new-0", "new-1"}
    assert outcome.deleted_count == 25
    assert outcome.details["task_results"] == 20
    assert outcome.details["group_results"] == 5
    # Rows deleted so far, and how many were expected in all (counted first).
    assert seen == [(7, 25), (14, 25), (20, 25), (25, 25)]


@override_settings(RESULTS_MAX_AGE_DAYS=0, TASKCONSOLE_MAX_AGE_DAYS=0)
def test_an_age_of_0_keeps_results_and_console_records_forever() -> None:
    insert_task_results("old-", 3, timezone.now() - timedelta(days=4000))
    make_group_results("old-", 2, timezone.now() - timedelta(days=4000))
    record = TaskRecord.objects.create(
        task_id="old-record", name="app.tasks.add", status=TaskStatus.SUCCESS
    )
    TaskRecord.objects.filter(pk=record.pk).update(created_at=timezone.now() - timedelta(days=4000))

    outcome = services.prune_results()

    assert TaskResult.objects.count() == 3
    assert GroupResult.objects.count() == 2
    assert TaskRecord.objects.filter(pk=record.pk).exists()
    assert outcome.deleted_count == 0
    assert outcome.summary == (
        "Task results are kept forever (RESULTS_MAX_AGE_DAYS is 0). "
        "Task console records are kept forever (TASKCONSOLE_MAX_AGE_DAYS is 0)."
    )
    with translation.override("zh-hans"):
        assert summaries.prune_results(outcome.details) == (
            "任务结果永久保留（RESULTS_MAX_AGE_DAYS 为 0）。"
            "任务控制台记录永久保留（TASKCONSOLE_MAX_AGE_DAYS 为 0）。"
        )


# BACKUPS
# ------------------------------------------------------------------------------
def test_rotation_keeps_the_newest_and_touches_only_its_own_files(tmp_path: Path) -> None:
    ours = [tmp_path / backup_name("sqlite", day) for day in range(1, 6)]
    others = [
        tmp_path / backup_name("postgresql", 1),
        tmp_path / "notes.txt",
        tmp_path / "db-sqlite-manual-copy.sqlite3",
        tmp_path / (backup_name("sqlite", 9) + ".partial"),
    ]
    for path in ours + others:
        path.write_text("x")

    removed = services.rotate_backups(tmp_path, "sqlite", keep=2)

    assert sorted(removed) == ours[:3]
    assert sorted(tmp_path.iterdir()) == sorted(ours[3:] + others)


def test_rotation_always_keeps_the_backup_just_made(tmp_path: Path) -> None:
    for day in (1, 2):
        (tmp_path / backup_name("sqlite", day)).write_text("x")
    services.rotate_backups(tmp_path, "sqlite", keep=0)
    assert [path.name for path in tmp_path.iterdir()] == [backup_name("sqlite", 2)]


def test_a_backup_that_fails_verification_fails_the_run_and_keeps_older_ones(
    tmp_path: Path, settings, monkeypatch
) -> None:
    settings.BACKUP_DIR = tmp_path
    settings.BACKUP_KEEP = 1
    vendor = connection.vendor
    older = tmp_path / backup_name(vendor, 1)
    older.write_text("an older backup")

    def reject(path: Path) -> list[str]:
        assert path.name.endswith(".partial")
        raise JobFailed(
            "The new backup lacks the tables django_migrations; older backups were kept."
        )

    monkeypatch.setattr(services, f"verify_{vendor}_backup", reject)
    with pytest.raises(JobFailed):
        services.run_job(Job.BACKUP_DATABASE)

    run = MaintenanceRun.objects.get()
    assert run.status == RunStatus.FAILED
    assert "lacks the tables django_migrations" in run.summary
    assert list(tmp_path.iterdir()) == [older]


def test_a_backup_is_private_to_the_worker_user(tmp_path: Path, settings) -> None:
    settings.BACKUP_DIR = tmp_path / "backups"
    outcome = services.backup_database()
    path = Path(outcome.backup_path)
    assert path.parent == tmp_path / "backups"
    assert services.BACKUP_NAME.match(path.name)
    assert path.stat().st_mode & 0o777 == 0o600
    assert outcome.backup_size == path.stat().st_size > 0
    # Its details hold every figure of its summary, after a trip through JSON.
    details = json.loads(json.dumps(outcome.details))
    with translation.override("zh-hans"):
        shown = summaries.of_success(Job.BACKUP_DATABASE, details, "STORED")
    assert shown != "STORED"
    assert str(path) in shown


def test_sqlite_verification_names_the_missing_tables(tmp_path: Path) -> None:
    path = tmp_path / "partial.sqlite3"
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE django_migrations (id integer)")
    with pytest.raises(JobFailed, match="django_celery_results_taskresult"):
        services.verify_sqlite_backup(path)


def test_sqlite_verification_rejects_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JobFailed, match="does not open as a SQLite database"):
        services.verify_sqlite_backup(path)


def test_an_in_memory_sqlite_database_cannot_be_backed_up(tmp_path: Path) -> None:
    with pytest.raises(JobFailed, match="in-memory"):
        services.backup_sqlite({"NAME": ":memory:"}, tmp_path / "x")


PG_SETTINGS = {
    "NAME": "shop",
    "USER": "shop_user",
    "PASSWORD": "s3cret-pass",
    "HOST": "db.internal",
    "PORT": "5433",
    "OPTIONS": {"sslmode": "require"},
}


def test_without_pg_dump_the_postgresql_backup_fails_clearly(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(services.shutil, "which", lambda name: None)
    with pytest.raises(JobFailed, match="pg_dump was not found on the PATH") as failure:
        services.backup_postgresql(PG_SETTINGS, tmp_path / "x.dump")
    assert "PostgreSQL client tools" in str(failure.value)


def test_pg_dump_gets_the_password_through_its_environment_only(
    monkeypatch, tmp_path: Path
) -> None:
    calls = []

    def fake_run(argv, **kwargs):
        calls.append((argv, kwargs))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(services.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(services.subprocess, "run", fake_run)
    services.backup_postgresql(PG_SETTINGS, tmp_path / "x.dump")

    ((argv, kwargs),) = calls
    assert argv[:2] == ["/usr/bin/pg_dump", "-Fc"]
    assert "--host=db.internal" in argv
    assert "--port=5433" in argv
    assert "--username=shop_user" in argv
    assert "--dbname=shop" in argv
    assert not any("s3cret" in arg for arg in argv)
    assert kwargs["env"]["PGPASSWORD"] == "s3cret-pass"
    assert kwargs["env"]["PGSSLMODE"] == "require"
    assert kwargs["timeout"] == services.PG_DUMP_TIMEOUT


def test_a_failing_pg_dump_reports_its_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(services.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(
        services.subprocess,
        "run",
        lambda argv, **kw: subprocess.CompletedProcess(argv, 1, "", "connection refused"),
    )
    with pytest.raises(JobFailed, match=r"exit code 1.*connection refused"):
        services.backup_postgresql(PG_SETTINGS, tmp_path / "x.dump")


def test_a_hung_pg_dump_is_stopped(monkeypatch, tmp_path: Path) -> None:
    def hang(argv, **kwargs):
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    monkeypatch.setattr(services.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(services.subprocess, "run", hang)
    with pytest.raises(JobFailed, match="did not finish"):
        services.backup_postgresql(PG_SETTINGS, tmp_path / "x.dump")


def test_postgresql_verification_needs_each_table_and_its_data(monkeypatch, tmp_path: Path) -> None:
    listing = "\n".join(
        [
            ";",
            "; Archive created at 2026-01-01 03:00:00 CST",
            "215; 1259 16386 TABLE public django_migrations postgres",
            "3614; 0 16386 TABLE DATA public django_migrations postgres",
            "250; 1259 18141 TABLE public django_celery_results_taskresult postgres",
            "251; 1259 18150 TABLE public maintenance_maintenancerun postgres",
            "3700; 0 18150 TABLE DATA public maintenance_maintenancerun postgres",
        ]
    )
    monkeypatch.setattr(services.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(
        services.subprocess,
        "run",
        lambda argv, **kw: subprocess.CompletedProcess(argv, 0, listing, ""),
    )
    with pytest.raises(JobFailed, match="lacks the tables django_celery_results_taskresult;"):
        services.verify_postgresql_backup(tmp_path / "x.dump")


def test_postgresql_verification_rejects_an_unreadable_archive(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(services.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(
        services.subprocess,
        "run",
        lambda argv, **kw: subprocess.CompletedProcess(
            argv, 1, "", "pg_restore: error: input file does not appear to be a valid archive"
        ),
    )
    with pytest.raises(JobFailed, match=r"does not open with pg_restore.*valid archive"):
        services.verify_postgresql_backup(tmp_path / "x.dump")


def test_a_summary_is_shown_in_the_readers_language_whatever_the_worker_wrote() -> None:

    with translation.override("en"):
        run = services.run_job(Job.PRUNE_RESULTS)
        cleared = services.run_job(Job.CLEAR_EXPIRED)
    # As the page reads them: through the database's JSON.
    run.refresh_from_db()
    cleared.refresh_from_db()
    assert run.summary.startswith("Deleted 0 task result(s)")
    assert run.summary_display == run.summary
    with translation.override("zh-hans"):
        shown, shown_cleared = run.summary_display, cleared.summary_display
        backup = summaries.backup_database(
            summaries.kept(
                {
                    "vendor": "SQLite",
                    "path": "/srv/db.sqlite3",
                    "size": 2048,
                    "tables": 12,
                    "keep": 7,
                    "removed": ["old.sqlite3"],
                }
            )
        )
    assert "Deleted" not in shown
    assert "删除" in shown
    assert "Deleted" not in shown_cleared
    assert "/srv/db.sqlite3" in backup
    assert "Backed up" not in backup
    # A failure's text is its error's; runs written before the details held the figures keep
    # their summary as stored.
    failed = MaintenanceRun(job=Job.PRUNE_RESULTS, status=RunStatus.FAILED, summary="boom")
    old = MaintenanceRun(
        job=Job.CLEAR_EXPIRED,
        status=RunStatus.SUCCEEDED,
        summary="Deleted 4 expired sessions.",
        details={"sessions": 4, "cache_entries": 8},
    )
    with translation.override("zh-hans"):
        assert (failed.summary_display, old.summary_display) == ("boom", old.summary)


def test_a_run_that_fails_again_shows_its_new_error_not_an_older_failure(monkeypatch) -> None:
    run = MaintenanceRun.objects.create(job=Job.PRUNE_RESULTS, status=RunStatus.RUNNING)
    MaintenanceRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(hours=2))
    services.fail_lost_runs(Job.PRUNE_RESULTS, timedelta(hours=1))

    def broken(progress):
        raise OSError("disk full")

    monkeypatch.setitem(services.JOBS, Job.PRUNE_RESULTS, broken)
    with pytest.raises(OSError, match="disk full"):
        services.run_job(Job.PRUNE_RESULTS, run_id=run.pk)
    run.refresh_from_db()
    assert run.summary_display == "OSError: disk full"


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "Not started: the task broker did not answer. Please try again."),
        ("zh-hans", "未启动：消息代理没有响应。请重试。"),
    ],
)
def test_a_run_that_was_not_started_reads_in_the_readers_language(language, text) -> None:
    run = MaintenanceRun(
        job=Job.BACKUP_DATABASE,
        status=RunStatus.FAILED,
        summary="Not started: the task broker did not answer. Please try again.",
        details={
            summaries.FAILURE_KEY: summaries.NOT_STARTED,
            summaries.ERROR_KEY: "OperationalError: Error 111 connecting to 127.0.0.1:6390.",
        },
    )
    with translation.override(language):
        assert run.summary_display == text


def test_a_run_cancelled_in_the_task_console_fails_with_the_reason(
    django_user_model, sent, django_capture_on_commit_callbacks
) -> None:
    from django.contrib.auth.models import Permission

    from taskconsole import actions
    from taskconsole.models import Origin

    operator = django_user_model.objects.create_user("operator", password="x")
    operator.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="taskconsole",
            codename__in=["view_taskrecord", "view_all_tasks", "cancel_task"],
        )
    )
    operator = django_user_model.objects.get(pk=operator.pk)
    run = MaintenanceRun.objects.create(job=Job.BACKUP_DATABASE, task_id="backup-1")
    TaskRecord.objects.create(
        task_id="backup-1",
        name="maintenance.tasks.backup_database",
        origin=Origin.CODE,
        args=[run.pk],
    )
    with django_capture_on_commit_callbacks(execute=True):
        record = actions.cancel(operator, "backup-1")
    assert record.status == TaskStatus.REVOKED
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.finished_at is not None
    assert run.summary_display == "Cancelled before it started."
    with translation.override("zh-hans"):
        assert run.summary_display == "在开始前被取消了。"


def test_a_run_stopped_or_expired_in_a_worker_says_which() -> None:
    stopped = MaintenanceRun.objects.create(
        job=Job.PRUNE_RESULTS, status=RunStatus.RUNNING, task_id="prune-1"
    )
    expired = MaintenanceRun.objects.create(job=Job.CLEAR_EXPIRED, task_id="clear-1")
    done = MaintenanceRun.objects.create(
        job=Job.CLEAR_EXPIRED, status=RunStatus.SUCCEEDED, task_id="clear-2"
    )
    announce_cancelled("prune-1", "maintenance.tasks.prune_results", terminated=True)
    announce_cancelled("clear-1", "maintenance.tasks.clear_expired", expired=True)
    announce_cancelled("clear-2", "maintenance.tasks.clear_expired")
    # A run a worker started before the console's word runs on.
    started = MaintenanceRun.objects.create(
        job=Job.CLEAR_EXPIRED, status=RunStatus.RUNNING, task_id="clear-3"
    )
    announce_cancelled("clear-3", "maintenance.tasks.clear_expired")
    started.refresh_from_db()
    assert started.status == RunStatus.RUNNING
    announce_cancelled("prune-1", "maintenance.tasks.run_job_now")
    for run in (stopped, expired, done):
        run.refresh_from_db()
    assert stopped.summary_display.startswith("Stopped while it ran.")
    assert expired.summary_display == "Its task expired before a worker started it."
    assert done.status == RunStatus.SUCCEEDED
