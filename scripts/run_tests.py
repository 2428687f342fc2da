"""`make test`: lint, the whole suite on the embedded defaults, then the integration tests again
on PostgreSQL (less those marked any_database) and a smoke subset on RabbitMQ when those servers
are reachable on localhost.

Environment:
  TEST_POSTGRES_URL   PostgreSQL for the second pass (default postgres://postgres@127.0.0.1:5432/myproject)
  TEST_RABBITMQ_URL   RabbitMQ for the smoke pass (default amqp://guest:guest@127.0.0.1:5672/myproject_test;
                      the vhost is created with rabbitmqctl when it is missing and that is possible)
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


def pytest_pass(name: str, args: list[str], env: dict[str, str]) -> Outcome:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        command = [str(BIN / "pytest"), *args, f"--junitxml={report}", *sys.argv[1:]]
        code, seconds = run(name, command, env)
        outcome = Outcome(name, seconds=seconds)
        if report.exists():
            for suite in ET.parse(report).getroot().iter("testsuite"):
                errors = int(suite.get("errors", 0)) + int(suite.get("failures", 0))
                outcome.skipped += int(suite.get("skipped", 0))
                outcome.failed += errors
                outcome.passed += int(suite.get("tests", 0)) - errors - int(suite.get("skipped", 0))
                outcome.failures += failed_cases(suite)
        if code not in (0,) and outcome.failed == 0:
            outcome.failed = 1
            outcome.note = f"pytest exited with code {code}"
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

    outcomes.append(pytest_pass("SQLite + embedded Redis (whole suite)", [], base_env))

    why_not = postgres_usable(POSTGRES_URL)
    if why_not:
        outcomes.append(Outcome("PostgreSQL (integration)", ran=False, note=why_not))
    else:
        env = {**base_env, "DATABASE_URL": POSTGRES_URL}
        outcomes.append(
            pytest_pass("PostgreSQL (integration)", ["-m", "integration and not any_database"], env)
        )

    why_not = rabbitmq_usable(RABBITMQ_URL)
    if why_not:
        outcomes.append(Outcome("RabbitMQ broker (smoke)", ran=False, note=why_not))
    else:
        env = {**base_env, "TEST_BROKER_URL": RABBITMQ_URL}
        outcomes.append(pytest_pass("RabbitMQ broker (smoke)", ["-m", "smoke"], env))

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
    print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
