"""Helpers for tests that run real Celery processes (workers, beat, devstack) as subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar, TypeVar

from django.conf import settings
from django.db import connection
from django.test import Client

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.1) -> T:
    """Poll until predicate() returns something truthy; return it, or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate!r}")
        time.sleep(interval)


def database_url() -> str:
    """A DATABASE_URL for the test database, so subprocesses share the test's data."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    if db["ENGINE"] == "django.db.backends.postgresql":
        auth = db["USER"] or ""
        if db["PASSWORD"]:
            auth += f":{db['PASSWORD']}"
        host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        return f"postgres://{auth}@{host}/{db['NAME']}"
    raise RuntimeError(f"No subprocess URL for database engine {db['ENGINE']}")


class ManagedProcess:
    """A subprocess in its own process group whose output is collected line by line."""

    #: The ones started and not yet stopped, in this test process.
    running: ClassVar[set[ManagedProcess]] = set()

    def __init__(
        self, argv: list[str], env: dict[str, str], name: str, cwd: str | Path | None = None
    ) -> None:
        self.name = name
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.process = subprocess.Popen(
            argv,
            cwd=cwd or settings.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        ManagedProcess.running.add(self)

    def _read(self) -> None:
        assert self.process.stdout
        for line in self.process.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_output(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(text in line for line in self.lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise AssertionError(
                        f"{self.name}: {text!r} not seen (exit code {self.process.poll()}). "
                        f"Output:\n" + "\n".join(self.lines[-60:])
                    )
                self._cond.wait(timeout=min(remaining, 0.2))

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def discard(self) -> int:
        """Kill the whole group at once, for a test's teardown.

        A Celery worker's warm shutdown spends 2-3 s in Celery's and billiard's own waits, which
        buys nothing once the test is over: what it would still write would only land after
        the test's tables were emptied. A message it had reserved stays unacknowledged for the
        hour of Redis's visibility timeout instead of reaching a later test (RabbitMQ requeues
        it at once, as a warm shutdown would have).
        """
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        code = self.process.wait()
        self._reader.join(timeout=5)
        ManagedProcess.running.discard(self)
        return code

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (a warm shutdown for Celery), then kill the whole group."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        # What is left of the group (pool children of a worker that did not stop in time).
        return self.discard()


#: The module of the ledger tasks of the delivery tests and the chaos suite, which a production
#: worker does not offer.
LEDGER_MODULE = "reliability.ledger"
INCLUDE_OPTIONS = ("-I", "--include")


def with_ledger_tasks(args: tuple[str, ...] | list[str]) -> list[str]:
    """A worker's extra arguments, its --include also naming the ledger tasks' module.

    Celery keeps only the last --include given, so the ledger's module joins the one already
    there instead of coming as a second option.
    """
    out = list(args)
    for index, arg in enumerate(out[:-1]):
        if arg in INCLUDE_OPTIONS:
            out[index + 1] = f"{out[index + 1]},{LEDGER_MODULE}"
            return out
    for index, arg in enumerate(out):
        for option in INCLUDE_OPTIONS:
            if arg.startswith(option + "="):
                out[index] = f"{arg},{LEDGER_MODULE}"
                return out
    return [*out, "--include", LEDGER_MODULE]


def celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "myproject", *args]


def console_launch(client: Client, task: str, arguments: dict) -> tuple[int, dict]:
    """Launch a task through the console's JSON API as client's user: (status, answer)."""
    response = client.post(
        "/console/api/launch/",
        json.dumps({"task": task, "arguments": arguments}),
        "application/json",
    )
    return response.status_code, response.json()


def listening_addresses(port: int, tables: tuple[str, ...] = ("tcp", "tcp6")) -> set[str]:
    """Addresses with a socket listening on port, read from /proc/net/tcp (IPv4), tcp6 (IPv6)."""
    families = {"tcp": socket.AF_INET, "tcp6": socket.AF_INET6}
    found = set()
    for table in tables:
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, _colon, hex_port = fields[1].partition(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                # The kernel prints each 32-bit word in host (little-endian) order.
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(families[table], raw))
    return found


def outside_addresses() -> list[str]:
    """This machine's own non-loopback IPv4 addresses (empty on a machine without a network)."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [a for a in out.stdout.split() if "." in a and not a.startswith("127.")]


# Debian's chromium by default; `make test` installs it there, elsewhere set CHROMIUM.
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A headless chromium driven by Playwright's sync API (no browser download): the Browser."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still synchronous, so Django's async-safety guard is lifted meanwhile.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def raised_from(cause: BaseException, wrapper: Callable[[str], BaseException]) -> BaseException:
    """`wrapper(str(cause))` raised from `cause`, as a library re-raises its driver's error."""
    try:
        try:
            raise cause
        except BaseException as exc:
            raise wrapper(str(exc)) from exc
    except BaseException as outer:
        return outer


def run_script(script: str, env: dict[str, str], *args: str, timeout: float = 60) -> dict:
    """Run a Python script in a fresh interpreter (settings read from `env`, as a deployment
    reads them); returns the JSON object it prints on its last line."""
    run = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(run.stdout.strip().splitlines()[-1])
