from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Heartbeat(models.Model):
    """The last time a long-running process (beat) said it was alive."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    beat_at = models.DateTimeField(_("last heartbeat"))

    class Meta:
        verbose_name = _("heartbeat")
        verbose_name_plural = _("heartbeats")

    def __str__(self) -> str:
        return f"{self.name} @ {self.beat_at:%Y-%m-%d %H:%M:%S}"


class BeatLock(models.Model):
    """The leader lease: only the beat that holds it sends due tasks."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    owner = models.CharField(_("owner"), max_length=255)
    expires_at = models.DateTimeField(_("expires at"))

    class Meta:
        verbose_name = _("beat lock")
        verbose_name_plural = _("beat locks")

    def __str__(self) -> str:
        return f"{self.name}: {self.owner}"


class BeatSlot(models.Model):
    """One row per (periodic task, slot) sent: a second send of the same slot is refused."""

    key = models.CharField(_("slot"), max_length=255, unique=True)
    task_name = models.CharField(_("periodic task"), max_length=200)
    sent_at = models.DateTimeField(_("sent at"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("beat slot")
        verbose_name_plural = _("beat slots")

    def __str__(self) -> str:
        return self.key


class BeatState(models.Model):
    """What beat remembers between runs, such as the time zone its schedule was computed in."""

    key = models.CharField(_("key"), max_length=100, unique=True)
    value = models.CharField(_("value"), max_length=255)

    class Meta:
        verbose_name = _("beat state")
        verbose_name_plural = _("beat states")

    def __str__(self) -> str:
        return f"{self.key}={self.value}"
