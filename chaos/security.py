"""Security scenarios: where secrets end up, what refuses strangers."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from chaos.common import BASE_DIR, ENV, Context, Worker, use_broker
from chaos.health import Stack, free_port

SENTINEL = "chaos-sentinel-" + uuid.uuid4().hex
FLOWER_USER = "chaos"


class Flower:
    """A Flower process on a free port, started as the product starts it, with its log."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.port = port
        self.log = log
        self.handle = log.open("a")
        self.process = subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait(self, auth: tuple[str, str] | None, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                url = f"http://127.0.0.1:{self.port}/healthcheck"
                if httpx.get(url, auth=auth, timeout=5).status_code == 200:
                    return
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"Flower did not start; see {self.log}")
            time.sleep(0.3)

    def stop(self) -> None:
        import os
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.handle.close()


def celery_flower(port: int, address: str = "127.0.0.1") -> list[str]:
    """The command `manage.py devstack` runs."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "myproject",
        "flower",
        f"--address={address}",
        f"--port={port}",
    ]


def flower_views(flower: Flower, task_id: str, auth: tuple[str, str]) -> dict[str, str]:
    """Flower's task list and task pages once its event consumer has seen the task finish."""
    base = f"http://127.0.0.1:{flower.port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listing = httpx.get(f"{base}/api/tasks", auth=auth, timeout=10)
        if listing.status_code == 200 and listing.json().get(task_id, {}).get("state") == "SUCCESS":
            break
        time.sleep(0.5)
    return {
        "/api/tasks": listing.text,
        "/api/task/info/<id>": httpx.get(
            f"{base}/api/task/info/{task_id}", auth=auth, timeout=10
        ).text,
        "/task/<id>": httpx.get(f"{base}/task/{task_id}", auth=auth, timeout=10).text,
    }


def sentinel_scenario(broker_name: str, broker: str, tmp: Path) -> dict:
    """A secret in task kwargs: where does it end up?"""
    from django.apps import apps
    from django.db import models

    from myproject.celery import app
    from reliability.models import LedgerEntry

    run = f"secret-{uuid.uuid4().hex[:8]}"
    queue = f"chaos-{run}"
    use_broker(broker)
    log = tmp / f"{run}.log"
    password = secrets.token_urlsafe(16)
    auth = (FLOWER_USER, password)
    port = free_port()
    flower = Flower(
        celery_flower(port),
        {**ENV, "CELERY_BROKER_URL": broker, "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{password}"},
        tmp / f"{run}-flower.log",
        port,
    )
    worker = None
    try:
        flower.wait(auth)
        # -E: task events from the first task on. The product's workers send events only once
        # Flower has asked (it does every few seconds), which a one-task run could race.
        worker = Worker(broker, queue, "secret", log, extra_args=("-E",))
        result = app.tasks["reliability.ledger.ledger_default"].apply_async(
            (run,), {"api_token": SENTINEL}, queue=queue
        )
        deadline = time.monotonic() + 60
        while not LedgerEntry.objects.filter(task_id=result.id, done=True).exists():
            if time.monotonic() > deadline:
                break
            time.sleep(0.3)
        time.sleep(2)
        views = flower_views(flower, result.id, auth)
    finally:
        if worker is not None:
            worker.stop()
        flower.stop()
    found = [f"flower {view}" for view, text in views.items() if SENTINEL in text]
    # Without the task in Flower's list, its views prove nothing: say so instead of 0.
    flower_saw = result.id in views["/api/tasks"]
    shown = None
    if flower_saw:
        with contextlib.suppress(ValueError):
            shown = json.loads(views["/api/task/info/<id>"]).get("kwargs")
    if SENTINEL in flower.log.read_text(errors="replace"):
        found.append("flower log")
    for model in apps.get_models():
        text_fields = [
            f.name
            for f in model._meta.concrete_fields
            if isinstance(f, models.CharField | models.TextField | models.JSONField)
        ]
        for row in model.objects.values_list(*text_fields) if text_fields else []:
            if any(SENTINEL in str(value) for value in row):
                found.append(f"db:{model._meta.db_table}")
                break
    if SENTINEL in log.read_text(errors="replace"):
        found.append("worker log")
    if broker.startswith("redis"):
        import redis

        client = redis.Redis.from_url(broker)
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            if kind == "string":
                values = [client.get(key)]
            elif kind == "list":
                values = client.lrange(key, 0, -1)
            elif kind == "hash":
                values = list(client.hgetall(key).values())
            elif kind == "zset":
                values = client.zrange(key, 0, -1)
            elif kind == "set":
                values = list(client.smembers(key))
            else:
                values = []
            if any(SENTINEL.encode() in (v or b"") for v in values):
                found.append(f"redis:{key.decode()}")
    return {
        "scenario": "11 secret sentinel",
        "broker": broker_name,
        "policy": "-",
        "tasks": 1,
        "stores": len(found),
        "note": (", ".join(found) or "found nowhere")
        + " (searched every text column, the worker and Flower logs, "
        + ("Redis keys, " if broker.startswith("redis") else "")
        + (
            f"Flower's task list and pages, where kwargs read {shown})"
            if flower_saw
            else "NOT Flower: it never saw the task)"
        ),
    }


def run_sentinel(ctx: Context) -> list[dict]:
    return [sentinel_scenario(name, url, ctx.tmp) for name, url in ctx.brokers]


# ----------------------------------------------------------------------------- exposure

PRODUCTION_HOST = "chaos.example.com"
#: What the TLS proxy in front of production adds to every request.
PROXY_HEADERS = {"Host": PRODUCTION_HOST, "X-Forwarded-Proto": "https"}


def machine_address() -> str | None:
    """This machine's first non-loopback IPv4 address, as `hostname -I` lists it."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for address in out.stdout.split():
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", address) and not address.startswith("127."):
            return address
    return None


def production_env(stack: Stack) -> dict[str, str]:
    """The README's production section: debug off, a real key, a host name, HTTPS on."""
    env = {
        **stack.env,
        "DJANGO_DEBUG": "False",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": PRODUCTION_HOST,
        "DJANGO_CSRF_TRUSTED_ORIGINS": f"https://{PRODUCTION_HOST}",
    }
    # The chaos suite's own tuning (a 20 s visibility timeout, a fast beat) is not production's.
    for name in (
        "DJANGO_SECURE_SSL_REDIRECT",
        "RELIABILITY_METRICS_TOKEN",
        "CELERY_VISIBILITY_TIMEOUT",
        "CELERY_UNACKED_RESTORE_THROTTLE",
        "BEAT_HEARTBEAT_INTERVAL",
        "BEAT_STALE_AFTER",
        "BEAT_LEADER_TTL",
    ):
        env.pop(name, None)
    return env


def check_deploy(env: dict[str, str]) -> list[str]:
    """The ids of the issues `manage.py check --deploy` reports."""
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = out.stdout + out.stderr
    if "System check identified" not in text:
        # A crash is not a clean bill of health.
        return [f"check did not run (exit {out.returncode}): {text.strip()[-200:]}"]
    return re.findall(r"^\S+: \(([\w.]+\.[CEW]\d+)\)", text, re.MULTILINE)


def tcp_refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return False
    except OSError:
        return True


def http_status(url: str, **kwargs) -> int | str:
    try:
        return httpx.get(url, timeout=30, **kwargs).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def run_exposure(ctx: Context) -> list[dict]:
    address = machine_address()
    stack = Stack(ctx.tmp, "exposure")
    flowers: dict[str, Flower] = {}
    attempts: list[tuple[str, bool]] = []  # (what was tried, refused)
    sanity: list[str] = []  # the same doors opened from inside, so a refusal is not an accident
    try:
        stack.start_redis()
        stack.prepare()
        env = production_env(stack)
        deploy_issues = check_deploy(env)
        remote_broker = check_deploy({**env, "CELERY_BROKER_URL": "redis://10.0.0.5:6379/0"})
        if address is None:
            return [
                {
                    "scenario": "12 exposure: check --deploy",
                    "errors": len(deploy_issues),
                    "note": ", ".join(deploy_issues) + "; no non-loopback address: access skipped",
                }
            ]
        stack.env = env
        stack.start_web(bind="0.0.0.0", headers=PROXY_HEADERS)
        password = secrets.token_urlsafe(16)
        auth = (FLOWER_USER, password)
        flower_env = {**env, "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{password}"}
        tutorial_env = {k: v for k, v in env.items() if not k.startswith("FLOWER_")}
        ports = {name: free_port() for name in ("tutorial", "devstack", "exposed")}
        shim = str(Path(sys.executable).with_name("flower"))
        flowers["tutorial"] = Flower(
            [shim, "-A", "myproject", f"--port={ports['tutorial']}"],
            tutorial_env,
            ctx.tmp / "exposure-flower-tutorial.log",
            ports["tutorial"],
        )
        flowers["devstack"] = Flower(
            celery_flower(ports["devstack"]),
            flower_env,
            ctx.tmp / "exposure-flower-devstack.log",
            ports["devstack"],
        )
        flowers["exposed"] = Flower(
            [*celery_flower(ports["exposed"], "0.0.0.0")],
            {**flower_env, "FLOWER_ADDRESS": "0.0.0.0"},
            ctx.tmp / "exposure-flower-exposed.log",
            ports["exposed"],
        )
        flowers["tutorial"].wait(None)
        flowers["devstack"].wait(auth)
        flowers["exposed"].wait(auth)
        for name in ("tutorial", "devstack"):
            attempts.append((f"flower {name} {address}", tcp_refused(address, ports[name])))
        remote = f"http://{address}:{ports['exposed']}"
        for path in ("/", "/api/tasks", "/api/workers"):
            status = http_status(remote + path)
            attempts.append((f"flower exposed {path} {status}", status == 401))
        if http_status(remote + "/api/tasks", auth=auth) != 200:
            sanity.append("exposed Flower refused its own password")
        attempts.append((f"embedded redis {address}", tcp_refused(address, stack.redis_port)))
        if tcp_refused("127.0.0.1", stack.redis_port):
            sanity.append("embedded Redis not answering on 127.0.0.1")
        web = f"http://{address}:{stack.web_port}"
        for path in ("/console/", "/console/api/tasks/", "/metrics", "/reliability/", "/admin/"):
            response = httpx.get(web + path, headers=PROXY_HEADERS, timeout=30)
            to_login = response.status_code == 302 and "login" in response.headers.get(
                "Location", ""
            )
            refused = to_login or response.status_code in (401, 403)
            attempts.append((f"web {path} {response.status_code}", refused))
        if http_status(web + "/healthz", headers=PROXY_HEADERS) != 200:
            sanity.append("the web server did not answer /healthz from outside")
    finally:
        for flower in flowers.values():
            flower.stop()
        stack.stop_all()
    refused = sum(1 for _, ok in attempts if ok)
    open_doors = [what for what, ok in attempts if not ok]
    return [
        {
            "scenario": "12 exposure: check --deploy",
            "broker": "Redis (private)",
            "errors": len(deploy_issues),
            "note": (", ".join(deploy_issues) or "no issues")
            + "; with a remote broker without password it warns: "
            + (", ".join(remote_broker) or "NOTHING"),
        },
        {
            "scenario": f"12 exposure: access from {address}",
            "broker": "Redis (private)",
            "refused": f"{refused}/{len(attempts)}",
            "errors": len(sanity),
            "note": (
                "open: " + ", ".join(open_doors)
                if open_doors
                else "Flower (tutorial, devstack: not listening; exposed: 401), embedded Redis, "
                "console, API, metrics, admin all refused"
            )
            + (" | " + "; ".join(sanity) if sanity else ""),
        },
    ]


SCENARIOS = {"sentinel": run_sentinel, "exposure": run_exposure}
