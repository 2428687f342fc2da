"""The console's settings, read once per process (and again after a test overrides one).

Several are read on every publish and every task a worker runs; a setting a project does not
define costs Django's lazy settings object a raised AttributeError each time it is asked.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.signals import setting_changed

_values: dict[str, Any] = {}
_MISSING = object()


def setting(name: str, default: Any) -> Any:
    """`getattr(settings, name, default)`, remembered (a name always comes with one default)."""
    value = _values.get(name, _MISSING)
    if value is _MISSING:
        value = _values[name] = getattr(settings, name, default)
    return value


def has_beat() -> bool:
    """Whether django-celery-beat is in INSTALLED_APPS: importable is not enough, because its
    models cannot even be imported in a project that does not install the app."""
    return apps.is_installed("django_celery_beat")


def _forget(**_: Any) -> None:
    _values.clear()


setting_changed.connect(_forget, dispatch_uid="taskconsole_conf_forget")
