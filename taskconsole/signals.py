"""Audit edits of periodic tasks made outside the console (the admin, other views)."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models.signals import post_delete, post_save

from .conf import has_beat
from .context import current_request_user

logger = logging.getLogger(__name__)


def _audit(action: str, instance: Any) -> None:
    user = current_request_user()
    if user is None:
        # Beat saves its bookkeeping (last_run_at, counts) all the time: not a person's change.
        return
    try:
        from .actions import audit

        audit(user, action, instance.name, task=instance.task)
    except Exception:
        logger.exception("Could not audit the change of periodic task %s", instance.pk)


def on_periodic_saved(sender: Any, instance: Any, created: bool = False, **_: Any) -> None:
    from .models import AuditAction

    _audit(AuditAction.SCHEDULE_CHANGE, instance)


def on_periodic_deleted(sender: Any, instance: Any, **_: Any) -> None:
    from .models import AuditAction

    _audit(AuditAction.SCHEDULE_DELETE, instance)


def connect() -> None:
    if not has_beat():
        return
    from django_celery_beat.models import PeriodicTask

    post_save.connect(on_periodic_saved, sender=PeriodicTask, dispatch_uid="tc_periodic_saved")
    post_delete.connect(on_periodic_deleted, sender=PeriodicTask, dispatch_uid="tc_periodic_del")
