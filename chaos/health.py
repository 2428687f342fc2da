"""Health and API scenarios: a real web server, worker and beat on a private Redis and database.

Both scenarios run against a stack of their own: an embedded Redis on a free port (so stopping
the broker stops nobody else's) and the PostgreSQL database myproject_chaos_web (so the console
API's fuzzed schedule changes and /readyz's beat heartbeat and queue age are not mixed with the
beat and delivery scenarios running beside them in myproject_chaos).

- health: /readyz must say ready with everything up, and not ready naming the cause when beat
  freezes, the worker stops and the broker goes away; /healthz stays alive throughout; /metrics
  refuses strangers and serves the token. Figure: wrong answers (errors).
- fuzz: schemathesis generates requests from /console/api/openapi.json, anonymous and with the
  API tokens of a staff user and of a user without the console permission. Figures: server
  errors (5xx) and tasks published by requests that were refused (4xx).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from chaos.common import BASE_DIR, ENV, PG_URL, Context

# One line per request of the scenarios' own HTTP client is noise in the suite's output.
logging.getLogger("httpx").setLevel(logging.WARNING)

WEB_DATABASE = "myproject_chaos_web"
METRICS_TOKEN = secrets.token_urlsafe(24)
#: Beat writes a heartbeat every second; the web server calls it stale after this many.
BEAT_STALE_AFTER = 6


def free_port() -> int:
    from operations import embedded_redis

    return embedded_redis.free_port()


def web_database_url(tmp: Path) -> str:
    """myproject_chaos_web on the chaos PostgreSQL, or a SQLite file when it is not there."""
    from chaos.common import listening

    if not listening("127.0.0.1", 5432):
        return f"sqlite:///{tmp / 'web.sqlite3'}"
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (WEB_DATABASE,)
        ).fetchone():
            conn.execute(f"CREATE DATABASE {WEB_DATABASE}")
    return PG_URL.rsplit("/", 1)[0] + f"/{WEB_DATABASE}"


def _prepare_main() -> None:
    """Run in a subprocess on the web database: schema, cache table, schedules, users, tokens."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from taskconsole.models import ApiToken

    call_command("migrate", interactive=False, verbosity=0)
    call_command("createcachetable", verbosity=0)
    call_command("sync_schedules", verbosity=0)
    # The database is the scenarios' scratch: a previous run's queued tasks (on a Redis that
    # is gone), beat's heartbeat and lease and cached answers must not leak in.
    from django.core.cache import cache

    from operations.models import BeatLock, BeatSlot, Heartbeat
    from taskconsole.models import TaskRecord

    for model in (TaskRecord, Heartbeat, BeatLock, BeatSlot, ApiToken):
        model.objects.all().delete()
    cache.clear()
    User = get_user_model()
    staff, _ = User.objects.get_or_create(
        username="chaos-staff", defaults={"is_staff": True, "is_superuser": True}
    )
    nobody, _ = User.objects.get_or_create(username="chaos-nobody")
    keys = {
        "staff": ApiToken.issue(staff, name="chaos")[1],
        "nobody": ApiToken.issue(nobody, name="chaos")[1],
    }
    print("TOKENS " + json.dumps(keys), flush=True)


class Stack:
    """Embedded Redis, gunicorn, a worker and beat: each a process group of its own."""

    def __init__(self, tmp: Path, name: str) -> None:
        self.tmp = tmp
        self.name = name
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.database = web_database_url(tmp)
        self.redis_port = free_port()
        self.broker = f"redis://127.0.0.1:{self.redis_port}/0"
        self.web_port = free_port()
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.tokens: dict[str, str] = {}
        self.env = {
            **ENV,
            "DATABASE_URL": self.database,
            "CELERY_BROKER_URL": self.broker,
            "DJANGO_DEBUG": "False",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            # Plain HTTP on loopback stands in for the TLS proxy in front of production.
            "DJANGO_SECURE_SSL_REDIRECT": "False",
            "RELIABILITY_METRICS_TOKEN": METRICS_TOKEN,
            "BEAT_HEARTBEAT_INTERVAL": "1",
            "BEAT_STALE_AFTER": str(BEAT_STALE_AFTER),
            "BEAT_LEADER_TTL": "10",
        }

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Path:
        log = self.tmp / f"{self.name}-{name}.log"
        with log.open("a") as handle:
            self.processes[name] = subprocess.Popen(
                argv,
                cwd=BASE_DIR,
                env=env or self.env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.logs[name] = log
        return log

    def wait_log(self, name: str, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.logs[name].read_text(errors="replace"):
            if time.monotonic() > deadline or self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} did not start; see {self.logs[name]}")
            time.sleep(0.2)

    def start_redis(self) -> None:
        from operations import embedded_redis

        data = self.tmp / f"{self.name}-redis"
        data.mkdir(exist_ok=True)
        self.spawn("redis", embedded_redis.server_command(self.redis_port, data))
        embedded_redis.wait_until_listening(self.redis_port, self.processes["redis"])

    def prepare(self) -> None:
        code = "import chaos.health as h; h._prepare_main()"
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=BASE_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
        line = next(line for line in out.splitlines() if line.startswith("TOKENS "))
        self.tokens = json.loads(line.removeprefix("TOKENS "))

    def start_web(self, bind: str = "127.0.0.1", headers: dict[str, str] | None = None) -> None:
        """gunicorn as the Procfile runs it; headers stand in for the proxy (Host, scheme)."""
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        self.spawn(
            "web",
            [
                gunicorn,
                "myproject.wsgi",
                "--bind",
                f"{bind}:{self.web_port}",
                "--workers",
                "2",
                "--timeout",
                "60",
            ],
        )
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/healthz", headers=headers, timeout=5).status_code == 200:
                    return
            if time.monotonic() > deadline or self.processes["web"].poll() is not None:
                raise RuntimeError(f"web did not start; see {self.logs['web']}")
            time.sleep(0.3)

    def start_worker(self, queues: str = "default,heavy_tasks") -> None:
        celery = [sys.executable, "-m", "celery", "-A", "myproject"]
        self.spawn(
            "worker",
            [
                *celery,
                "worker",
                "-l",
                "info",
                "-Q",
                queues,
                "-c",
                "1",
                "-n",
                f"{self.name}@%h",
                "--without-mingle",
                "--without-gossip",
            ],
        )
        self.wait_log("worker", " ready.")

    def start_beat(self) -> None:
        celery = [sys.executable, "-m", "celery", "-A", "myproject"]
        schedule = self.tmp / f"{self.name}-beat-schedule"
        self.spawn("beat", [*celery, "beat", "-l", "info", "-s", str(schedule)])

    def signal(self, name: str, sig: int) -> None:
        os.killpg(self.processes[name].pid, sig)

    def stop(self, name: str) -> None:
        process = self.processes.get(name)
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGCONT)
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        # The whole group: no pool child may outlive the scenario.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop(name)


# ----------------------------------------------------------------------------- health


def readyz(stack: Stack, token: str | None, as_json: bool) -> tuple[int, set[str], str]:
    """(status, names of the failing checks, body) as a caller with or without a token sees it."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{stack.base}/readyz?format={'json' if as_json else 'text'}"
    try:
        response = httpx.get(url, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        return 0, set(), str(exc)
    if as_json:
        try:
            checks = response.json()["checks"]
        except (ValueError, KeyError):
            return response.status_code, set(), response.text
        failing = {c["name"] for c in checks if not c["ok"]}
    else:
        failing = set(re.findall(r"^\[FAIL\] ([^:]+):", response.text, re.MULTILINE))
    return response.status_code, failing, response.text


def judge(
    status: int, failing: set[str], body: str, as_json: bool, must: set[str], may: set[str]
) -> bool:
    """Right answer: 200 and nothing failing, or 503 naming every cause and nothing unrelated."""
    if not must:
        right = status == 200 and not failing
        return right and (as_json or body.startswith("ready"))
    right = status == 503 and must <= failing <= must | may
    return right and (as_json or body.startswith("not ready"))


def health_phase(stack: Stack, label: str, must: set[str], may: set[str]) -> dict:
    """Wait for /readyz to give the expected answer, then judge it four ways and /healthz."""
    started = time.monotonic()
    flipped = None
    deadline = started + 60
    seen: set[str] = set()
    while time.monotonic() < deadline:
        status, failing, body = readyz(stack, METRICS_TOKEN, True)
        seen = failing
        if judge(status, failing, body, True, must, may):
            flipped = time.monotonic() - started
            break
        time.sleep(0.5)
    # Each web process keeps its outcome for READYZ_CACHE_SECONDS (by design: a balancer's
    # polls must not flood the workers with broadcasts); the one that answered first may not be
    # the one that answers next. The four-way judgement waits until every process's copy is
    # newer than the change.
    from reliability.views import READYZ_CACHE_SECONDS

    time.sleep(READYZ_CACHE_SECONDS + 0.5)
    answers = [
        (token, as_json, readyz(stack, token, as_json))
        for token in (METRICS_TOKEN, None)
        for as_json in (True, False)
    ]
    wrong = [
        f"{'token' if token else 'anonymous'} {'json' if as_json else 'text'}: {status} "
        f"{sorted(failing)}"
        for token, as_json, (status, failing, body) in answers
        if not judge(status, failing, body, as_json, must, may)
    ]
    alive = httpx.get(f"{stack.base}/healthz", timeout=30)
    if alive.status_code != 200 or alive.text.strip() != "alive":
        wrong.append(f"healthz {alive.status_code}")
    return {
        "label": label,
        "answers": len(answers) + 1,
        "wrong": wrong,
        "flip s": None if flipped is None else round(flipped, 1),
        "failing": sorted(seen),
    }


def metrics_access(stack: Stack) -> tuple[int, int, list[str]]:
    """(refused, attempts, wrong answers) for /metrics without and with credentials."""
    url = f"{stack.base}/metrics"
    strangers = {
        "anonymous": {},
        "no-permission token": {"Authorization": "Token " + stack.tokens["nobody"]},
    }
    strangers["bad bearer"] = {"Authorization": "Bearer not-the-token"}
    refused, wrong = 0, []
    for label, headers in strangers.items():
        response = httpx.get(url, headers=headers, timeout=30)
        if response.status_code in (401, 403):
            refused += 1
        else:
            wrong.append(f"metrics {label}: {response.status_code}")
    for label, headers in {
        "metrics token": {"Authorization": f"Bearer {METRICS_TOKEN}"},
        "staff API token": {"Authorization": "Token " + stack.tokens["staff"]},
    }.items():
        response = httpx.get(url, headers=headers, timeout=30)
        if response.status_code != 200 or "celery_tasks" not in response.text:
            wrong.append(f"metrics {label}: {response.status_code}")
    return refused, len(strangers), wrong


def run_health(ctx: Context) -> list[dict]:
    stack = Stack(ctx.tmp, "health")
    phases = []
    try:
        stack.start_redis()
        stack.prepare()
        stack.start_web()
        stack.start_worker()
        stack.start_beat()
        phases.append(health_phase(stack, "all up", set(), set()))
        refused, attempts, metrics_wrong = metrics_access(stack)
        # A frozen beat (SIGSTOP) stops its heartbeat without releasing its leader lease.
        stack.signal("beat", signal.SIGSTOP)
        phases.append(health_phase(stack, "beat frozen", {"beat"}, set()))
        stack.signal("beat", signal.SIGCONT)
        phases.append(health_phase(stack, "beat resumed", set(), set()))
        stack.stop("worker")
        stack.start_worker(queues="default")
        phases.append(health_phase(stack, "heavy_tasks without worker", {"queues"}, set()))
        stack.stop("worker")
        phases.append(health_phase(stack, "worker stopped", {"workers"}, set()))
        stack.stop("redis")
        # Beat cannot send its due tasks either, so its heartbeat may lapse as well.
        phases.append(health_phase(stack, "broker down", {"broker"}, {"beat"}))
    finally:
        stack.stop_all()
    wrong = [w for p in phases for w in p["wrong"]] + metrics_wrong
    wrong += [f"{p['label']}: never flipped" for p in phases if p["flip s"] is None]
    answers = sum(p["answers"] for p in phases) + attempts + 2
    note = f"{len(wrong)} wrong of {answers} answers; " + "; ".join(
        f"{p['label']}: {'FAIL ' + ','.join(p['failing']) if p['failing'] else 'ready'}"
        f" in {p['flip s']} s"
        for p in phases
    )
    return [
        {
            "scenario": "8 health (/readyz flips)",
            "broker": "Redis (private)",
            "policy": "-",
            "errors": len(wrong),
            "refused": f"{refused}/{attempts}",
            "note": note + (" | wrong: " + "; ".join(wrong) if wrong else ""),
        }
    ]


# ----------------------------------------------------------------------------- fuzz

#: Examples per (operation, identity, generation mode); hypothesis stops sooner on small spaces.
FUZZ_EXAMPLES = 30
#: /workers/ broadcasts to the workers and waits a second for answers: a few cases suffice.
SLOW_OPERATIONS = {"GET /workers/": 3}


class Published:
    """Tasks the web server has published so far: broker messages and console records."""

    def __init__(self, stack: Stack) -> None:
        import redis

        self.redis = redis.Redis.from_url(stack.broker)
        self.database = stack.database
        self.connection = None
        if not self.database.startswith("sqlite"):
            import psycopg

            url = self.database.replace("postgres://", "postgresql://", 1)
            self.connection = psycopg.connect(url, autocommit=True)

    def messages(self) -> int:
        total = 0
        for key in self.redis.scan_iter(count=1000):
            # Lists are queues; pidbox reply queues carry control answers, not tasks.
            if self.redis.type(key) == b"list" and b"pidbox" not in key:
                total += self.redis.llen(key)
        return total

    def records(self) -> int:
        if self.database.startswith("sqlite"):
            import sqlite3

            with sqlite3.connect(self.database.removeprefix("sqlite:///")) as conn:
                return conn.execute("SELECT count(*) FROM taskconsole_taskrecord").fetchone()[0]
        return self.connection.execute("SELECT count(*) FROM taskconsole_taskrecord").fetchone()[0]

    def now(self) -> tuple[int, int]:
        return self.messages(), self.records()


def fuzz_operation(operation, identity: str, headers: dict, mode, base: str, state: dict) -> None:
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from hypothesis.errors import Unsatisfiable

    label = f"{operation.method.upper()} {operation.path}"
    examples = SLOW_OPERATIONS.get(label, FUZZ_EXAMPLES)
    if (label, mode) in state["unsatisfiable"]:
        return

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @seed(state["seed"])
    @given(operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        case.headers = {
            k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"
        }
        before = state["counter"].now()
        try:
            response = case.call(
                base_url=base, headers=headers, timeout=60, session=state["session"]
            )
        except Exception as exc:
            state["transport"].append(f"{label} {identity}: {type(exc).__name__}")
            return
        after = state["counter"].now()
        state["cases"] += 1
        status = response.status_code
        state["statuses"][status // 100] = state["statuses"].get(status // 100, 0) + 1
        if status >= 500:
            state["server errors"].append(f"{label} {identity} {status}: {case.as_curl_command()}")
        if 400 <= status < 500:
            state["refused"] += 1
            messages, records = after[0] - before[0], after[1] - before[1]
            if messages > 0 or records > 0:
                state["published"] += max(messages, records)
                state["leaks"].append(f"{label} {identity} {status}")
        elif status < 400:
            # An accepted launch's record is written by the web process's buffer up to 50 ms
            # later: counted in the next request's window, it read as a refused one's leak.
            time.sleep(0.2)

    try:
        run()
    except Unsatisfiable:
        # Every input of this operation is valid: there is no negative case, for anyone.
        state["unsatisfiable"].add((label, mode))


def run_fuzz(ctx: Context) -> list[dict]:
    import requests
    import schemathesis
    from schemathesis import GenerationMode

    stack = Stack(ctx.tmp, "fuzz")
    state: dict = {
        "cases": 0,
        "refused": 0,
        "published": 0,
        "statuses": {},
        "server errors": [],
        "leaks": [],
        "transport": [],
        "unsatisfiable": set(),
        # One seed for the run, printed, so a failure can be replayed.
        "seed": secrets.randbits(64),
        "session": requests.Session(),
    }
    try:
        stack.start_redis()
        stack.prepare()
        stack.start_web()
        state["counter"] = Published(stack)
        at_start = state["counter"].now()
        identities = {
            "anonymous": {},
            "staff token": {"Authorization": "Token " + stack.tokens["staff"]},
            "no-permission token": {"Authorization": "Token " + stack.tokens["nobody"]},
        }
        schema = schemathesis.openapi.from_url(
            f"{stack.base}/console/api/openapi.json", headers=identities["staff token"]
        )
        base = f"{stack.base}/console/api"
        operations = [result.ok() for result in schema.get_all_operations()]
        for operation in operations:
            for identity, headers in identities.items():
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    fuzz_operation(operation, identity, headers, mode, base, state)
        at_end = state["counter"].now()
        if state["counter"].connection is not None:
            state["counter"].connection.close()
        accepted = (at_end[0] - at_start[0], at_end[1] - at_start[1])
    finally:
        stack.stop_all()
    problems = state["server errors"][:3] + state["leaks"][:3] + state["transport"][:3]
    statuses = ", ".join(f"{k}xx {v}" for k, v in sorted(state["statuses"].items()))
    return [
        {
            "scenario": "10 console API fuzz",
            "broker": "Redis (private)",
            "policy": "schemathesis",
            "tasks": state["cases"],
            "errors": len(state["server errors"]),
            "published": state["published"],
            "note": f"{len(operations)} operations x 3 identities, seed {state['seed']}; "
            f"{statuses}; "
            f"accepted requests published {accepted[0]} messages, {accepted[1]} records; "
            f"{len(state['transport'])} transport errors"
            # Operations whose every input is valid have no negative cases to generate.
            + f"; {len(state['unsatisfiable'])} operations without negative cases"
            + (" | " + "; ".join(problems) if problems else ""),
        }
    ]


SCENARIOS = {"health": run_health, "fuzz": run_fuzz}
