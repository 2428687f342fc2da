"""The tutorial's DatabaseScheduler, plus a heartbeat so celery_check can tell beat is alive."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler as BaseDatabaseScheduler

from .models import Heartbeat

logger = logging.getLogger(__name__)

BEAT_HEARTBEAT = "beat"


class DatabaseScheduler(BaseDatabaseScheduler):
    _last_heartbeat = 0.0

    def tick(self, *args, **kwargs) -> float:
        interval = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now - self._last_heartbeat >= settings.BEAT_HEARTBEAT_INTERVAL:
            self._last_heartbeat = now
            self._write_heartbeat()
        return min(interval, settings.BEAT_HEARTBEAT_INTERVAL)

    def _write_heartbeat(self) -> None:
        try:
            close_old_connections()
            Heartbeat.objects.update_or_create(
                name=BEAT_HEARTBEAT, defaults={"beat_at": timezone.now()}
            )
        except DatabaseError as exc:
            # A database outage must not stop beat; the stale heartbeat reports it instead.
            logger.warning("Could not write beat's heartbeat: %s", exc)
