"""`make test`: lint, then side by side the whole suite on the embedded defaults, the integration
tests again on PostgreSQL (less those marked any_database) and a smoke subset on RabbitMQ when
those servers are reachable on localhost. Each pass's output is printed when it ends.

Environment:
  TEST_POSTGRES_URL   PostgreSQL for the second pass (default postgres://postgres@127.0.0.1:5432/myproject)
  TEST_RABBITMQ_URL   RabbitMQ for the smoke pass (default amqp://guest:guest@127.0.0.1:5672/myproject_test;
                      the vhost is created with rabbitmqctl when it is missing and that is possible)
  TEST_SERIAL=1       run the passes one after another, their output live
  Extra arguments are passed to every pytest run (e.g. `make test ARGS="-x"` or -k).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
#: pytest's exit code when nothing was selected.
NO_TESTS_COLLECTED = 5
BIN = Path(sys.executable).parent
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/myproject")
# A vhost of its own, so the tests never purge the queues of a RabbitMQ used for development.
RABBITMQ_URL = os.environ.get(
    "TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/myproject_test"
)


@dataclass
class Outcome:
    name: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    ran: bool = True
    note: str = ""
    # "test id: first line of its failure", so the summary at the tail of a log names what failed.
    failures: list[str] = field(default_factory=list)


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or default_port)
    try:
        with socket.create_connection(address, timeout=2):
            return True
    except OSError:
        return False


def postgres_usable(url: str) -> str:
    """An empty string when PostgreSQL accepts us, else why not."""
    if not reachable(url, 5432):
        return "nothing listens there"
    try:
        import psycopg

        parts = urlsplit(url)
        with psycopg.connect(
            host=parts.hostname,
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password or None,
            dbname="postgres",
            connect_timeout=5,
        ):
            return ""
    except Exception as exc:  # any refusal means: skip this pass, say why
        return f"cannot connect: {exc}"


def rabbitmq_usable(url: str) -> str:
    """An empty string when RabbitMQ accepts us, else why not; creates the test vhost if it can."""
    if not reachable(url, 5672):
        return "nothing listens there"

    def connect() -> str:
        from kombu import Connection

        try:
            with Connection(url, connect_timeout=5) as conn:
                conn.ensure_connection(max_retries=1)
        except Exception as exc:  # any refusal means: skip this pass, say why
            return f"cannot connect: {exc}"
        return ""

    why_not = connect()
    vhost = urlsplit(url).path.lstrip("/")
    if why_not and vhost and shutil.which("rabbitmqctl"):
        user = urlsplit(url).username or "guest"
        for command in (
            ["add_vhost", vhost],
            ["set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
        ):
            subprocess.call(
                ["rabbitmqctl", *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        why_not = connect()
    if why_not and vhost:
        why_not += f" (create the vhost: rabbitmqctl add_vhost {vhost})"
    return why_not


def run(name: str, command: list[str], env: dict[str, str]) -> tuple[int, float]:
    print(f"\n=== {name}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    code = subprocess.call(command, cwd=ROOT, env=env)
    return code, time.monotonic() - started


@dataclass
class Pass:
    """A pytest run in progress. Passes run side by side (see main), each with its own output."""

    name: str
    process: subprocess.Popen
    started: float
    tmp: Path
    streamed: bool
    ended: float | None = None

    def poll(self) -> bool:
        """Whether it has ended (noting when, the first time it is seen ended)."""
        if self.ended is None and self.process.poll() is not None:
            self.ended = time.monotonic()
        return self.ended is not None

    @property
    def report(self) -> Path:
        return self.tmp / "report.xml"

    @property
    def log(self) -> Path:
        return self.tmp / "output.txt"


def start_pass(name: str, args: list[str], env: dict[str, str], streamed: bool) -> Pass:
    tmp = Path(tempfile.mkdtemp(prefix="myproject-tests-"))
    command = [str(BIN / "pytest"), *args, f"--junitxml={tmp / 'report.xml'}", *sys.argv[1:]]
    print(f"\n=== {name}: {' '.join(command)}", flush=True)
    with open(tmp / "output.txt", "w") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=None if streamed else log, stderr=subprocess.STDOUT
        )
    return Pass(name, process, time.monotonic(), tmp, streamed)


def finish_pass(running: Pass) -> Outcome:
    code = running.process.wait()
    running.poll()
    outcome = Outcome(running.name, seconds=(running.ended or time.monotonic()) - running.started)
    if not running.streamed:
        print(f"\n=== {running.name}: output ({outcome.seconds:.0f} s)", flush=True)
        sys.stdout.write(running.log.read_text(errors="replace"))
        sys.stdout.flush()
    if running.report.exists():
        for suite in ET.parse(running.report).getroot().iter("testsuite"):
            errors = int(suite.get("errors", 0)) + int(suite.get("failures", 0))
            outcome.skipped += int(suite.get("skipped", 0))
            outcome.failed += errors
            outcome.passed += int(suite.get("tests", 0)) - errors - int(suite.get("skipped", 0))
            outcome.failures += failed_cases(suite)
    if code == NO_TESTS_COLLECTED and sys.argv[1:]:
        # `make test ARGS="-k beat"`: the arguments chose nothing in this pass; that is no failure.
        outcome.note = "no test chosen by the arguments"
    elif code != 0 and outcome.failed == 0:
        outcome.failed = 1
        outcome.note = f"pytest exited with code {code}"
    shutil.rmtree(running.tmp, ignore_errors=True)
    return outcome


def failed_cases(suite: ET.Element) -> list[str]:
    found = []
    for case in suite.iter("testcase"):
        for problem in (*case.findall("failure"), *case.findall("error")):
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
            found.append(f"{test_id}: {message[0][:200] if message else problem.tag}")
    return found


def main() -> int:
    base_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_BROKER_URL")}
    outcomes: list[Outcome] = []

    lint_failed = 0
    for command in (["ruff", "check", "."], ["ruff", "format", "--check", "."]):
        code, _ = run("lint", [str(BIN / command[0]), *command[1:]], base_env)
        lint_failed += code != 0
    outcomes.append(Outcome("lint (ruff)", passed=2 - lint_failed, failed=lint_failed))

    # The passes share nothing (each its own database, broker and ports) and mostly wait on
    # their workers, so they run side by side: on two cores the whole run takes about as long
    # as its longest pass. TEST_SERIAL=1 runs them one after another, with live output.
    serial = os.environ.get("TEST_SERIAL", "") not in ("", "0")
    passes: list[tuple[str, list[str], dict[str, str]] | Outcome] = [
        ("SQLite + embedded Redis (whole suite)", [], base_env)
    ]
    why_not = postgres_usable(POSTGRES_URL)
    if why_not:
        passes.append(Outcome("PostgreSQL (integration)", ran=False, note=why_not))
    else:
        env = {**base_env, "DATABASE_URL": POSTGRES_URL}
        selection = "(integration or database) and not any_database"
        passes.append(("PostgreSQL (integration)", ["-m", selection], env))
    why_not = rabbitmq_usable(RABBITMQ_URL)
    if why_not:
        passes.append(Outcome("RabbitMQ broker (smoke)", ran=False, note=why_not))
    else:
        env = {**base_env, "TEST_BROKER_URL": RABBITMQ_URL}
        passes.append(("RabbitMQ broker (smoke)", ["-m", "smoke"], env))

    running: list[Pass | Outcome] = []
    for entry in passes:
        if isinstance(entry, Outcome):
            running.append(entry)
        elif serial:
            running.append(finish_pass(start_pass(*entry, streamed=True)))
        else:
            running.append(start_pass(*entry, streamed=False))
    # Each pass's time is up to its own end, not to the end of the one before it in the list.
    while not all([r.poll() for r in running if isinstance(r, Pass)]):  # each one polled
        time.sleep(0.5)
    outcomes += [finish_pass(r) if isinstance(r, Pass) else r for r in running]

    print("\n=== Summary")
    for o in outcomes:
        if o.ran:
            line = f"  {o.name}: {o.passed} passed, {o.failed} failed, {o.skipped} skipped"
            line += f" in {o.seconds:.0f} s" if o.seconds else ""
            print(line + (f" ({o.note})" if o.note else ""))
            for failure in o.failures:
                print(f"    FAILED {failure}")
        else:
            print(f"  {o.name}: SKIPPED this pass ({o.note})")
    ran = [o for o in outcomes if o.ran]
    failed = sum(o.failed for o in ran)
    passed = sum(o.passed for o in ran)
    skipped = sum(o.skipped for o in ran)
    total = f"total: {passed} passed, {failed} failed, {skipped} skipped"
    not_run = [o.name.split(" (")[0] for o in outcomes if not o.ran]
    if not_run:
        # A pass left out is not a skipped test, but the last line must not hide it.
        total += f"; not run: {', '.join(not_run)} (see above)"
    print(total)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
