"""celery_check when things are down: it says what, in plain words, and exits non-zero.

No worker may run during these tests, so they live apart from the modules that start one.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from operations.models import Heartbeat

pytestmark = [
    pytest.mark.integration,
    pytest.mark.any_database,
    pytest.mark.django_db(transaction=True),
]


def test_celery_check_fails_clearly_without_workers_or_beat(subprocess_env) -> None:
    Heartbeat.objects.create(name="beat", beat_at=timezone.now() - timedelta(minutes=10))
    check = subprocess.run(
        [sys.executable, "manage.py", "celery_check"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode != 0
    assert "The broker at redis://" in check.stdout or "The broker at amqp://" in check.stdout
    assert "No worker answered" in check.stdout
    assert "it is not running" in check.stdout
    assert "Not working: workers, beat" in check.stderr


def test_celery_check_says_when_the_broker_is_down(subprocess_env) -> None:
    from operations.embedded_redis import free_port

    env = {**subprocess_env, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    check = subprocess.run(
        [sys.executable, "manage.py", "celery_check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode != 0
    assert "does not answer" in check.stdout
    assert "Not working: broker" in check.stderr
