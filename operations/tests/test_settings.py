"""The settings are safe when the environment sets them for production."""

from __future__ import annotations

import os
import subprocess
import sys

PRODUCTION = {
    "DJANGO_DEBUG": "False",
    "DJANGO_SECRET_KEY": "x" * 20 + "-a-long-random-production-secret-key-for-the-test",
    "DJANGO_ALLOWED_HOSTS": "tasks.example.com",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_a_secret_key() -> None:
    run = manage("check", env={"DJANGO_DEBUG": "False"})
    assert run.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is False." in run.stderr


def test_a_public_host_without_django_debug_is_a_deployment_not_development() -> None:
    """A forgotten DJANGO_DEBUG must not serve debug pages, the tutorial's open /test/ views
    or the development key to the network."""
    public = {"DJANGO_ALLOWED_HOSTS": "tasks.example.com,127.0.0.1"}
    run = manage("check", env=public)
    assert run.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS names tasks.example.com, so this is a deployment" in run.stderr
    script = "from django.conf import settings as s; print(s.DEBUG, s.TUTORIAL_VIEWS_ENABLED)"
    keyed = {**public, "DJANGO_SECRET_KEY": PRODUCTION["DJANGO_SECRET_KEY"]}
    assert manage("shell", "-v0", "-c", script, env=keyed).stdout.split() == ["False", "False"]
    # Asked for, development may serve other names; local names alone stay development.
    asked = {**public, "DJANGO_DEBUG": "True"}
    assert manage("shell", "-v0", "-c", script, env=asked).stdout.split() == ["True", "True"]
    local = {"DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1,[::1],app.localhost"}
    assert manage("shell", "-v0", "-c", script, env=local).stdout.split() == ["True", "True"]


def test_production_settings_pass_the_deployment_checks() -> None:
    run = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no issues" in run.stdout


def test_production_redirects_to_https_but_not_the_health_probes() -> None:
    """A balancer probes the web port over plain HTTP: /healthz and /readyz answer it."""
    script = (
        "from django.test import Client; c = Client(HTTP_HOST='tasks.example.com'); "
        "print(c.get('/healthz').status_code, c.get('/readyz').status_code, "
        "c.get('/console/').status_code)"
    )
    run = manage("shell", "-v0", "-c", script, env=PRODUCTION)
    healthz, readyz, console = run.stdout.split()[-3:]
    assert healthz == "200", run.stdout + run.stderr
    assert readyz in {"200", "503"}
    assert console == "301"


def test_production_turns_off_the_tutorial_views_and_debug() -> None:
    script = (
        "from django.conf import settings as s; "
        "print(s.DEBUG, s.TUTORIAL_VIEWS_ENABLED, s.ALLOWED_HOSTS, s.SESSION_COOKIE_SECURE)"
    )
    run = manage("shell", "-v0", "-c", script, env=PRODUCTION)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False False ['tasks.example.com'] True"


def test_result_expiry_and_the_global_ignore_switch_come_from_the_environment() -> None:
    script = (
        "from myproject.celery import app; from app.tasks import add; "
        "print(app.conf.result_expires, add.ignore_result)"
    )
    default = manage("shell", "-v0", "-c", script, env={})
    assert default.stdout.split() == ["None", "False"], default.stderr
    configured = manage(
        "shell",
        "-v0",
        "-c",
        script,
        env={"CELERY_RESULT_EXPIRES": "3600", "CELERY_TASK_IGNORE_RESULT": "true"},
    )
    assert configured.stdout.strip() == "1:00:00 True", configured.stderr


def test_the_tutorials_result_expires_0_keeps_results_forever() -> None:
    # 设为0，存储结果永不过期: the maintenance job's pruning follows, unless told otherwise.
    script = (
        "from django.conf import settings as s; from myproject.celery import app; "
        "print(app.conf.result_expires, s.RESULTS_MAX_AGE_DAYS, s.TASKCONSOLE_MAX_AGE_DAYS)"
    )
    unset = manage("shell", "-v0", "-c", script, env={})
    assert unset.stdout.split() == ["None", "30", "30"], unset.stderr
    forever = manage("shell", "-v0", "-c", script, env={"CELERY_RESULT_EXPIRES": "0"})
    assert forever.stdout.split() == ["None", "0", "0"], forever.stderr
    told = manage(
        "shell",
        "-v0",
        "-c",
        script,
        env={"CELERY_RESULT_EXPIRES": "0", "RESULTS_MAX_AGE_DAYS": "90"},
    )
    assert told.stdout.split() == ["None", "90", "90"], told.stderr
