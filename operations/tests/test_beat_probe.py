"""What celery_check and /readyz say about beat, from its heartbeat and its clean stop."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone, translation

from operations.beat import STOPPED_AT_KEY
from operations.models import BeatState, Heartbeat
from operations.probes import check_beat

pytestmark = pytest.mark.django_db


def test_a_beat_that_stopped_cleanly_is_not_running_at_once() -> None:
    now = timezone.now()
    Heartbeat.objects.create(name="beat", beat_at=now - timedelta(seconds=5))
    assert check_beat().ok
    BeatState.objects.create(key=STOPPED_AT_KEY, value=(now - timedelta(seconds=2)).isoformat())
    probe = check_beat()
    assert not probe.ok
    with translation.override("en"):
        assert check_beat().summary.startswith("Beat stopped 2 s ago")
    with translation.override("zh-hans"):
        assert check_beat().summary.startswith("beat 已在 2 秒前停止")
    # Started again: its first heartbeat is newer than the stop.
    Heartbeat.objects.filter(name="beat").update(beat_at=timezone.now())
    assert check_beat().ok
