"""Unit tests: the task bodies, run in-process without a broker."""

from __future__ import annotations

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from app import tasks
from app.models import Event
from myproject.celery import app as celery_app


def test_add_adds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks.time, "sleep", lambda seconds: None)
    assert tasks.add(3, 5) == 8


def test_crunch_numbers() -> None:
    assert tasks.crunch_numbers(4) == 0 + 1 + 4 + 9


def test_ping_is_bound_to_the_project_app() -> None:
    assert tasks.ping.app is celery_app
    assert tasks.ping() == "pong"


@pytest.mark.django_db
def test_log_event_writes_a_row() -> None:
    tasks.log_event("hello")
    assert Event.objects.get().message == "hello"


def test_nap_passes_the_soft_limit_on_unless_told_to_ignore_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupted(seconds: float) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(tasks.time, "sleep", interrupted)
    with pytest.raises(SoftTimeLimitExceeded):
        tasks.nap(5)


def test_routes_and_annotations_come_from_settings() -> None:
    conf = celery_app.conf
    assert conf.task_routes["app.tasks.crunch_numbers"]["queue"] == "heavy_tasks"
    assert conf.task_annotations["app.tasks.add"]["rate_limit"] == "10/s"
    assert {q.name for q in conf.task_queues} == {"default", "heavy_tasks"}
    assert conf.task_default_queue == "default"
    assert conf.accept_content == ["application/json"]
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.result_backend == "django-db"
    assert conf.result_extended is True
    assert conf.timezone == "Asia/Shanghai"
    assert conf.task_time_limit > conf.task_soft_time_limit > 0
    # Recycled on memory growth (a leak) rather than every 200 tasks: see settings.py.
    assert conf.worker_max_tasks_per_child == 10_000
    assert conf.worker_max_memory_per_child == 256 * 1024
    assert tasks.log_event.ignore_result is True


def test_time_limit_settings_become_each_tasks_defaults() -> None:
    from django.conf import settings

    assert tasks.nap.time_limit == settings.CELERY_TASK_TIME_LIMIT
    assert tasks.nap.soft_time_limit == settings.CELERY_TASK_SOFT_TIME_LIMIT


def test_celery_reads_django_settings_once_and_follows_overrides(settings) -> None:
    # The CELERY_ settings are a plain dict in app.conf (myproject/celery.py), not Django's
    # lazy object, and an override in a test reaches Celery all the same.
    assert not any(getattr(m, "obj", None) is not None for m in celery_app.conf.maps)
    before = celery_app.conf.task_default_priority
    settings.CELERY_TASK_DEFAULT_PRIORITY = 7
    assert celery_app.conf.task_default_priority == 7
    settings.CELERY_TASK_DEFAULT_PRIORITY = before
    assert celery_app.conf.task_default_priority == before
