"""What every chaos scenario shares: the services, Django, worker subprocesses, the ledger."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from operations.testing import with_ledger_tasks  # noqa: E402 (the repo on sys.path first)

REDIS_URL = os.environ.get("CHAOS_REDIS_URL", "redis://127.0.0.1:6379/13")
AMQP_URL = os.environ.get("CHAOS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
PG_URL = os.environ.get("CHAOS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/myproject_chaos")
VISIBILITY = 20  # seconds, Redis only: how long an unacknowledged message waits to come back


@dataclass
class Context:
    """What a scenario gets: reachable brokers as (name, url), a log directory, the task count."""

    brokers: list[tuple[str, str]]
    tmp: Path
    tasks: int
    database_url: str
    extra: dict = field(default_factory=dict)


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def choose_database(tmp: Path) -> str:
    if listening("127.0.0.1", 5432):
        try:
            import psycopg

            with psycopg.connect(
                "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
            ) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = 'myproject_chaos'"
                ).fetchone()
                if not exists:
                    conn.execute("CREATE DATABASE myproject_chaos")
            return PG_URL
        except Exception as exc:
            print(f"PostgreSQL unusable ({exc}); using SQLite.")
    return f"sqlite:///{tmp / 'chaos.sqlite3'}"


ENV: dict[str, str] = {}


def setup_django(database_url: str) -> None:
    ENV.update(
        os.environ,
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="myproject.settings",
        CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY),
        # Scan for expired unacknowledged messages on every 10 s tick, not every tenth.
        CELERY_UNACKED_RESTORE_THROTTLE="1",
        PYTHONUNBUFFERED="1",
        DJANGO_LOG_LEVEL="INFO",
    )
    os.environ.update(ENV)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.utils.module_loading import autodiscover_modules

    # The scenarios send the ledger tasks by name: register them here as the workers do.
    autodiscover_modules("tasks", "ledger")


class Worker:
    """A real `celery -A myproject worker` on its own queue, its output appended to `log`."""

    def __init__(
        self,
        broker: str,
        queue: str,
        name: str,
        log: Path,
        extra_env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
        concurrency: int = 2,
        wait: bool = True,
    ) -> None:
        self.log = log
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "myproject",
            "worker",
            "-l",
            "info",
            "-Q",
            queue,
            "-c",
            str(concurrency),
            "-n",
            f"{name}-{uuid.uuid4().hex[:6]}@%h",
            "--without-mingle",
            "--without-gossip",
            "--prefetch-multiplier=1",
            *with_ledger_tasks(extra_args),
        ]
        self.handle = log.open("a")
        # Several workers may append to one log in turn: only this one's lines say it is ready.
        self.started = log.stat().st_size
        self.process = subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env={**ENV, "CELERY_BROKER_URL": broker, **(extra_env or {})},
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            try:
                self.ready()
            except BaseException:
                # A worker that never said ready must not outlive the scenario that gave up.
                self.stop()
                raise

    def ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self.log.open("rb") as handle:
                handle.seek(self.started)
                if b" ready." in handle.read():
                    return
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"worker did not start; see {self.log}")
            time.sleep(0.2)

    def children(self) -> list[int]:
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                pids.append(int(stat.parent.name))
        return pids

    def kill_all(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        self.kill_all()
        self.handle.close()


def use_broker(url: str) -> None:
    from myproject.celery import app

    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None
