"""The outbox sweeper."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import outbox


@shared_task(ignore_result=True)
def sweep_outbox() -> int:
    """Re-send outbox messages the broker has not taken; safe to overlap (rows are claimed)."""
    sent = outbox.sweep()
    outbox.prune(settings.RELIABILITY_OUTBOX_KEEP_DAYS)
    return sent
