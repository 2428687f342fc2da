"""/healthz, /readyz and /metrics against the real test broker and a real worker."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from operations.models import Heartbeat
from operations.testing import wait_for
from reliability import metrics
from reliability.views import forget_readiness
from taskconsole.models import ApiToken, TaskRecord, TaskStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOKEN = "metrics-token-for-the-tests"


@pytest.fixture(autouse=True)
def fresh_readiness(settings):
    # /readyz and /metrics' counts are shared for a few seconds; each test asks afresh.
    forget_readiness()
    cache.delete(metrics.COUNTS_CACHE_KEY)
    settings.RELIABILITY_METRICS_TOKEN = TOKEN


def trusted(client: Client) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


def test_healthz_answers_alive_in_words_and_json(client: Client) -> None:
    text = client.get("/healthz")
    assert text.status_code == 200
    assert text.content.decode().strip() == "alive"
    assert client.get("/healthz?format=json").json() == {"status": "ok"}
    assert client.get("/healthz", HTTP_ACCEPT="application/json").json() == {"status": "ok"}


def test_readyz_says_what_is_missing_without_workers_or_beat(client: Client) -> None:
    response = client.get("/readyz?format=json", **trusted(client))
    assert response.status_code == 503
    checks = {c["name"]: c for c in response.json()["checks"]}
    assert checks["database"]["ok"]
    assert checks["broker"]["ok"]
    assert not checks["workers"]["ok"]
    assert not checks["beat"]["ok"]
    assert checks["queue age"]["ok"]
    text = client.get("/readyz", **trusted(client)).content.decode()
    assert text.startswith("not ready")
    assert "[FAIL] workers: No worker answered" in text


def test_readyz_tells_strangers_only_what_fails(client: Client) -> None:
    response = client.get("/readyz?format=json")
    assert response.status_code == 503
    checks = {c["name"]: c for c in response.json()["checks"]}
    assert checks["workers"] == {
        "name": "workers",
        "ok": False,
        "summary": "failing",
        "details": [],
    }
    assert "redis://" not in response.content.decode()
    assert "[FAIL] workers: failing" in client.get("/readyz").content.decode()


def test_readyz_is_ready_with_a_worker_per_queue_and_fresh_beat(
    client: Client, start_module_worker
) -> None:
    start_module_worker(queues="default,heavy_tasks", concurrency=1, name="ready")
    Heartbeat.objects.create(name="beat", beat_at=timezone.now())

    def ready():
        # A busy machine can make a worker miss one 1 s inspect round: ask again.
        forget_readiness()
        answer = client.get("/readyz", HTTP_ACCEPT="application/json")
        return answer if answer.status_code == 200 else None

    response = wait_for(ready, timeout=30, interval=1)
    assert response.json()["status"] == "ok"
    assert client.get("/readyz").content.decode().startswith("ready")


def test_readyz_fails_when_a_queued_task_waits_too_long(client: Client, settings) -> None:
    from app.tasks import add

    settings.RELIABILITY_MAX_QUEUE_AGE = 60
    # A real message in a queue no worker reads, published five minutes ago.
    queue = f"age_{uuid.uuid4().hex[:8]}"
    waiting = add.apply_async((1, 2), queue=queue)
    wait_for(lambda: TaskRecord.objects.filter(task_id=waiting.id).exists())
    TaskRecord.objects.filter(task_id=waiting.id).update(
        created_at=timezone.now() - timezone.timedelta(minutes=5)
    )
    try:
        checks = _checks(client)
        assert not checks["queue age"]["ok"]
        assert "more than 60 s" in checks["queue age"]["summary"]
        # Its message purged (or lost by the broker): nothing waits, whatever the record says
        # until the sweep marks it vanished.
        _purge(queue)
        forget_readiness()
        assert _checks(client)["queue age"]["ok"]
    finally:
        _purge(queue)


def _checks(client: Client) -> dict[str, dict]:
    answer = client.get("/readyz?format=json", **trusted(client)).json()
    return {c["name"]: c for c in answer["checks"]}


def _purge(queue: str) -> None:
    from myproject.celery import app as celery_app

    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)


def test_metrics_are_refused_to_strangers_and_shown_to_console_users(
    client: Client, settings
) -> None:
    assert client.get("/metrics").status_code == 401
    user = User.objects.create_user("ops", password="pw-long-enough-1")
    client.force_login(user)
    assert client.get("/metrics").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_taskrecord"))
    TaskRecord.objects.create(task_id="a", name="x", status=TaskStatus.SUCCESS, origin="code")
    Heartbeat.objects.create(name="beat", beat_at=timezone.now())
    body = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert body.status_code == 401
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'celery_tasks{state="SUCCESS"} 1' in text
    assert 'celery_queue_length{queue="default"}' in text
    assert "celery_beat_lag_seconds" in text
    assert "celery_task_wait_seconds_avg" in text
    assert "celery_broker_up 1" in text

    _token, key = ApiToken.issue(user)
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    settings.RELIABILITY_METRICS_TOKEN = "scrape-secret"
    scraped = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert scraped.status_code == 200


def test_metrics_count_the_records_at_most_every_few_seconds(settings) -> None:
    settings.RELIABILITY_METRICS_COUNT_SECONDS = 60
    TaskRecord.objects.create(task_id="a", name="x", status=TaskStatus.SUCCESS, origin="code")
    assert 'celery_tasks{state="SUCCESS"} 1' in metrics.render()
    TaskRecord.objects.create(task_id="b", name="x", status=TaskStatus.SUCCESS, origin="code")
    # Within the minute the count is the cached one; switched off, it is counted each time.
    assert 'celery_tasks{state="SUCCESS"} 1' in metrics.render()
    settings.RELIABILITY_METRICS_COUNT_SECONDS = 0
    assert 'celery_tasks{state="SUCCESS"} 2' in metrics.render()


def test_readyz_keeps_its_outcome_a_few_seconds_in_its_own_process(client, monkeypatch) -> None:
    from operations import probes

    runs: list[float] = []

    def run_all(worker_timeout: float) -> list[probes.Probe]:
        runs.append(worker_timeout)
        return [probes.Probe("broker", len(runs) > 1, "checked")]

    monkeypatch.setattr(probes, "run_all", run_all)
    assert client.get("/readyz").status_code == 503
    assert client.get("/readyz").status_code == 503
    assert len(runs) == 1
    # Nothing of it is in the cache that other processes and instances share.
    cache.clear()
    assert client.get("/readyz").status_code == 503
    forget_readiness()
    assert client.get("/readyz").status_code == 200
    assert len(runs) == 2
