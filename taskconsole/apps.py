from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TaskConsoleConfig(AppConfig):
    name = "taskconsole"
    verbose_name = _("Task console")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import capture, checks, lost, registry, signals, unsent  # noqa: F401

        capture.connect()
        capture.watch_beat()
        lost.connect()
        unsent.watch()
        signals.connect()
        registry.autodiscover()
