"""The allow-list of tasks people may launch from the console, each with a pydantic schema.

Apps register their tasks in a ``console.py`` module, found at start-up like ``admin.py``::

    from pydantic import BaseModel, Field
    from taskconsole import registry

    class AddArgs(BaseModel):
        x: int
        y: int

    registry.register("app.tasks.add", schema=AddArgs, label=_("Add two numbers"))

Only registered names can be launched or retried; Celery's built-ins never are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models
from django.utils.functional import Promise
from django.utils.module_loading import autodiscover_modules
from django.utils.translation import gettext_lazy as _
from pydantic import BaseModel
from pydantic_core import PydanticCustomError


class CancelPolicy(models.TextChoices):
    REVOKE = "revoke", _("Cancel only before it starts")
    TERMINATE = "terminate", _("Cancel before it starts, or terminate it while it runs")


@dataclass(frozen=True)
class Launchable:
    """A task people may start: its Celery name, arguments schema and cancel policy."""

    name: str
    schema: type[BaseModel]
    label: Any
    description: Any = ""
    cancel_policy: str = CancelPolicy.REVOKE
    #: Extra options for apply_async (queue, countdown...), fixed by the developer.
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def can_terminate(self) -> bool:
        return self.cancel_policy == CancelPolicy.TERMINATE

    def json_schema(self) -> dict[str, Any]:
        """The schema as plain JSON data, lazy translations rendered in the active language."""
        return _plain(self.schema.model_json_schema())


def _plain(value: Any) -> Any:
    if isinstance(value, Promise):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


_registry: dict[str, Launchable] = {}


def register(
    task_or_name: Any,
    *,
    schema: type[BaseModel],
    label: Any = None,
    description: Any = "",
    cancel_policy: str = CancelPolicy.REVOKE,
    **options: Any,
) -> Launchable:
    """Put a task on the launch list. The schema's fields are the task's keyword arguments."""
    name = task_or_name if isinstance(task_or_name, str) else task_or_name.name
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise TypeError(f"schema for {name} must be a pydantic BaseModel subclass")
    if cancel_policy not in CancelPolicy.values:
        raise ValueError(f"unknown cancel_policy {cancel_policy!r} for {name}")
    launchable = Launchable(
        name=name,
        schema=schema,
        label=label or name,
        description=description,
        cancel_policy=cancel_policy,
        options=tuple(sorted(options.items())),
    )
    _registry[name] = launchable
    return launchable


def unregister(name: str) -> None:
    _registry.pop(name, None)


def get(name: str) -> Launchable | None:
    return _registry.get(name)


def all_launchables() -> list[Launchable]:
    return sorted(_registry.values(), key=lambda item: item.name)


def require_permission(permission: str, message: str) -> None:
    """Refuse a launch whose requesting user lacks an app's own permission.

    For a launch schema's validator, so the console asks what the app's own pages ask. The
    console's launch, retry and "run now" name their user whether or not TaskOwnerMiddleware
    is installed; only a validation outside them and outside a request (the shell, a script)
    has no user to check.
    """
    from .context import current_actor

    user = current_actor()
    if user is not None and not user.has_perm(permission):
        raise PydanticCustomError("permission_denied", str(message))


_run_permissions: dict[str, tuple[str, Any]] = {}


def require_to_run(task_or_name: Any, permission: str, message: Any) -> None:
    """Ask an app's own permission of whoever runs this task by hand (a periodic task's "run
    now") when it is not on the launch list, whose schema would ask it."""
    name = task_or_name if isinstance(task_or_name, str) else task_or_name.name
    _run_permissions[name] = (permission, message)


def runnable_by_hand(name: str) -> bool:
    """A periodic task running this task may be run now: it is on the launch list, or its app
    said who may run it by hand (require_to_run). The rest run on their schedules only."""
    return name in _registry or name in _run_permissions


def run_refusal(user: Any, name: str) -> str | None:
    """The app's message if the user may not run this task by hand, else None."""
    needed = _run_permissions.get(name)
    if needed is not None and not user.has_perm(needed[0]):
        return str(needed[1])
    return None


def autodiscover() -> None:
    autodiscover_modules("console")
