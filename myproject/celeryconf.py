"""Celery's settings object, with each option's lookup remembered until a setting changes.

Celery reads its options through `app.conf` many times per message: about fifteen lookups in
every `delay()`, more in a worker for every task. Each lookup tries the option's names (with
and without the `CELERY_` prefix, old and new style) in every source, the app's changes first,
then Django's settings, then Celery's defaults, and every miss on the way is a KeyError raised
and caught: 40-50 µs of a 500 µs `delay()` on a 2-core VM (bench item 1). The answer only
changes when a setting does, so it is kept until then.

Every way Celery and the project change settings goes through the object's own methods
(`conf.x = ...`, `update`, `add_defaults`, `swap_with`, ...), which forget what that object
kept, or through Django's `setting_changed` (see `myproject.celery`), after which every such
object, copies included, starts over (`forget_everywhere`). Writing to `conf.changes`
directly bypasses this; neither Celery nor the project does so on a live app.
"""

from __future__ import annotations

from typing import Any

from celery.app.utils import Settings


class _Missing:
    """A lookup that found nothing: the KeyError it raised, raised again each time."""

    __slots__ = ("args",)

    def __init__(self, args: tuple[Any, ...]) -> None:
        self.args = args


#: Bumped when a source that settings objects share changes (Django's settings): what every
#: object kept before is dropped on its next lookup.
_generation = 0


def forget_everywhere() -> None:
    global _generation
    _generation += 1


class RememberingSettings(Settings):
    """Celery's `Settings`, answering a repeated lookup from what the first one found."""

    def _lookups(self) -> dict[str, Any]:
        # In __dict__: attribute writes on a Settings object are setting writes.
        state = self.__dict__
        lookups = state.get("_remembered")
        if lookups is None or state.get("_generation") != _generation:
            state["_generation"] = _generation
            lookups = state["_remembered"] = {}
        return lookups

    def forget(self) -> None:
        # A new dict, not clear(): a lookup running in another thread keeps writing to the
        # old one, so an answer it found before the change is never kept after it.
        self.__dict__["_remembered"] = {}

    def __getitem__(self, key: str) -> Any:
        lookups = self._lookups()
        try:
            value = lookups[key]
        except KeyError:
            try:
                value = super().__getitem__(key)
            except KeyError as missing:
                lookups[key] = _Missing(missing.args)
                raise
            lookups[key] = value
            return value
        if type(value) is _Missing:
            raise KeyError(*value.args)
        return value

    # Every change goes through one of these: the lookups start over.
    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.forget()

    def __delitem__(self, key: str) -> None:
        try:
            super().__delitem__(key)
        finally:
            self.forget()

    def clear(self) -> None:
        super().clear()
        self.forget()

    def update(self, *args: Any, **kwargs: Any) -> Any:
        # Also before: the observers Celery calls after the update read the new values.
        self.forget()
        try:
            return super().update(*args, **kwargs)
        finally:
            self.forget()

    def pop(self, key: Any, *default: Any) -> Any:
        try:
            return super().pop(key, *default)
        finally:
            self.forget()

    def add_defaults(self, d: Any) -> None:
        super().add_defaults(d)
        self.forget()

    def swap_with(self, other: Any) -> None:
        super().swap_with(other)
        self.forget()


def remember_lookups(conf: Settings) -> RememberingSettings:
    """Turn an app's configured settings object into one that remembers its lookups."""
    if not isinstance(conf, RememberingSettings):
        # object's own setattr: attribute writes on a Settings object are setting writes.
        object.__setattr__(conf, "__class__", RememberingSettings)
    conf.forget()
    return conf
