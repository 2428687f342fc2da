"""The console's permissions, in one place so views and API ask the same questions."""

from __future__ import annotations

VIEW = "taskconsole.view_taskrecord"
VIEW_ALL = "taskconsole.view_all_tasks"
LAUNCH = "taskconsole.launch_task"
CANCEL = "taskconsole.cancel_task"
CHANGE_SCHEDULE = "taskconsole.change_schedule"


def can_view(user) -> bool:
    return bool(user and user.is_authenticated and (user.has_perm(VIEW) or user.has_perm(VIEW_ALL)))


def can_view_all(user) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(VIEW_ALL))


def can_launch(user) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(LAUNCH))


def can_cancel(user) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(CANCEL))


def can_change_schedule(user) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(CHANGE_SCHEDULE))
