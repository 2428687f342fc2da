"""Backups for real through a worker whose BACKUP_DIR is a temporary directory.

The module starts its own worker on `default` (with BACKUP_DIR and BACKUP_KEEP in its
environment) and so does not use celery_worker, which would share the queue's tasks.
"""

from __future__ import annotations

import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from django.db import connection

from maintenance.actions import queue_run
from maintenance.models import Job, RunStatus
from maintenance.services import BACKUP_NAME, EXPECTED_TABLES
from operations.testing import ManagedProcess

from .helpers import wait_for_run

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

KEEP = 3


@pytest.fixture(scope="module")
def backup_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("backups") / "nested"


@pytest.fixture(scope="module")
def backup_worker(start_module_worker, backup_dir: Path) -> ManagedProcess:
    return start_module_worker(
        name="backups",
        queues="default",
        concurrency=1,
        extra_env={"BACKUP_DIR": str(backup_dir), "BACKUP_KEEP": str(KEEP)},
    )


def tables_in(path: Path) -> set[str]:
    """Open the backup independently of the job's own verification."""
    if connection.vendor == "sqlite":
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            assert db.execute("SELECT COUNT(*) FROM django_migrations").fetchone()[0] > 0
            return names
    listing = subprocess.run(
        ["pg_restore", "--list", str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    # "3614; 0 17899 TABLE DATA public django_migrations postgres"
    return {line.split()[6] for line in listing.splitlines() if " TABLE DATA " in line}


def test_backups_rotate_keeping_the_newest_that_each_open(backup_worker, backup_dir: Path) -> None:
    runs = []
    for _ in range(KEEP + 2):
        run = wait_for_run(queue_run(Job.BACKUP_DATABASE).pk, timeout=90)
        assert run.status == RunStatus.SUCCEEDED, run.summary
        assert run.task_id in backup_worker.output
        runs.append(run)

    kept = sorted(path for path in backup_dir.iterdir())
    assert kept == sorted(Path(run.backup_path) for run in runs[-KEEP:])
    assert all(BACKUP_NAME.match(path.name) for path in kept)
    for run in runs[:2]:
        assert not Path(run.backup_path).exists()
    assert runs[-1].details["removed"] == [Path(runs[1].backup_path).name]
    for run in runs[-KEEP:]:
        path = Path(run.backup_path)
        assert run.backup_size == path.stat().st_size > 0
        assert set(EXPECTED_TABLES) <= tables_in(path)
        assert f"Kept the newest {KEEP} backup(s)" in run.summary
