"""The system checks for settings that lose tasks, run them twice or let strangers in."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import redis
from django.core.management import call_command

from reliability import checks


def conf(**overrides) -> SimpleNamespace:
    base = {
        "broker_url": "redis://127.0.0.1:6379/0",
        "broker_transport_options": {"visibility_timeout": 3600},
        "task_time_limit": 300,
        "task_acks_late": False,
        "accept_content": ["application/json"],
        "result_accept_content": ["application/json"],
        "task_serializer": "json",
        "result_serializer": "json",
    }
    return SimpleNamespace(**{**base, **overrides})


def task(name: str, **attrs) -> SimpleNamespace:
    return SimpleNamespace(
        name=name, **{"acks_late": False, "time_limit": None, "idempotent": False, **attrs}
    )


def test_the_project_settings_pass() -> None:
    call_command("check", fail_level="WARNING")


def test_visibility_timeout_shorter_than_countdowns_or_limits_is_reported(settings) -> None:
    settings.RELIABILITY_MAX_COUNTDOWN = 7200
    [warning] = checks.check_visibility_timeout(conf(), {})
    assert warning.id == "reliability.W001"
    assert "RELIABILITY_MAX_COUNTDOWN (7200 s)" in warning.msg
    settings.RELIABILITY_MAX_COUNTDOWN = 60
    slow = {"x.slow": task("x.slow", acks_late=True, time_limit=4000)}
    [warning] = checks.check_visibility_timeout(conf(), slow)
    assert "x.slow.time_limit (4000 s)" in warning.msg
    assert checks.check_visibility_timeout(conf(), {}) == []
    assert checks.check_visibility_timeout(conf(broker_url="amqp://g:g@host//"), slow) == []


def test_acks_late_without_idempotency_is_reported() -> None:
    tasks = {
        "a.risky": task("a.risky", acks_late=True),
        "a.safe": task("a.safe", acks_late=True, idempotent=True),
    }
    ids = [(m.id, m.obj) for m in checks.check_acks_late(conf(), tasks)]
    assert ids == [("reliability.W003", "a.risky")]
    assert [m.id for m in checks.check_acks_late(conf(task_acks_late=True), {})] == [
        "reliability.W002"
    ]


def test_pickle_is_an_error() -> None:
    [error] = checks.check_serializers(conf(accept_content=["application/json", "pickle"]))
    assert error.id == "reliability.E004"
    assert checks.check_serializers(conf()) == []


def test_exposed_broker_and_flower_are_reported(monkeypatch) -> None:
    [warning] = checks.check_broker_exposure(conf(broker_url="redis://10.0.0.5:6379/0"))
    assert warning.id == "reliability.W005"
    assert checks.check_broker_exposure(conf(broker_url="redis://:s3cret@10.0.0.5:6379/0")) == []
    monkeypatch.setenv("FLOWER_ADDRESS", "0.0.0.0")
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    [warning] = checks.check_flower_exposure()
    assert warning.id == "reliability.W006"
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:long-password")
    assert checks.check_flower_exposure() == []


def test_the_delivery_policy_filter_names_the_policy() -> None:
    from django.template import Context, Template

    rendered = Template("{% load reliability %}{{ name|delivery_policy }}").render(
        Context({"name": "imports.tasks.process_import_file"})
    )
    assert rendered.startswith("Idempotent: never lost")


def test_a_soft_time_limit_above_the_hard_one_is_an_error() -> None:
    [error] = checks.check_time_limits(conf(task_soft_time_limit=240, task_time_limit=5))
    assert error.id == "reliability.E007"
    assert "CELERY_TASK_SOFT_TIME_LIMIT (240 s)" in error.msg
    assert checks.check_time_limits(conf(task_soft_time_limit=4, task_time_limit=5)) == []
    assert checks.check_time_limits(conf(task_soft_time_limit=240, task_time_limit=None)) == []


SEND_WITH_THE_TUTORIALS_LIMIT = """
import django
django.setup()
from django.conf import settings
from app.tasks import add
result = add.apply_async((1, 2), queue="check-time-limits")
print(settings.CELERY_TASK_TIME_LIMIT, settings.CELERY_TASK_SOFT_TIME_LIMIT, bool(result.id))
"""


@pytest.mark.integration
def test_the_tutorials_time_limit_alone_still_sends(subprocess_env, broker_url) -> None:
    # The tutorial sets CELERY_TASK_TIME_LIMIT = 5 and no soft limit: the soft one follows it.
    env = {**subprocess_env, "CELERY_TASK_TIME_LIMIT": "5"}
    env.pop("CELERY_TASK_SOFT_TIME_LIMIT", None)
    try:
        run = subprocess.run(
            [sys.executable, "-c", SEND_WITH_THE_TUTORIALS_LIMIT],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.split()[-3:] == ["5", "4", "True"]
        # Both set, the soft one above: the check says so before any send fails.
        env["CELERY_TASK_SOFT_TIME_LIMIT"] = "240"
        check = subprocess.run(
            [sys.executable, "manage.py", "check"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode != 0
        assert "reliability.E007" in check.stderr
    finally:
        redis.Redis.from_url(broker_url).delete("check-time-limits")


def test_the_global_acks_late_setting_does_not_reach_the_apps_tasks() -> None:
    # What reliability.W002 says: AtMostOnceTask decides, whatever CELERY_TASK_ACKS_LATE says.
    from celery import Celery

    from reliability.delivery import AtMostOnceTask

    other = Celery("w002", set_as_current=False, task_cls=AtMostOnceTask)
    other.conf.task_acks_late = True

    @other.task(name="w002.job")
    def job() -> None:
        return None

    assert job.acks_late is False
