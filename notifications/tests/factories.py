from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth.models import Permission, User

from notifications import services
from notifications.models import Notification


def notification(
    recipients: Sequence[str] | int = 3, subject: str = "Hello", body: str = "Body text"
) -> Notification:
    if isinstance(recipients, int):
        recipients = [f"user{i}@example.com" for i in range(recipients)]
    return services.create_notification(subject=subject, body=body, recipients=recipients)


def user(*permissions: str, username: str = "sender") -> User:
    """A user holding the given notifications permissions (codenames)."""
    account = User.objects.create_user(username=username, password="unused-in-tests")
    account.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="notifications", codename__in=permissions
        )
    )
    return account


def console_user(*permissions: str, username: str = "operator") -> User:
    """A user who may see and launch their own tasks on the task console, plus `permissions`."""
    account = user(*permissions, username=username)
    account.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="taskconsole", codename__in=["view_taskrecord", "launch_task"]
        )
    )
    return User.objects.get(pk=account.pk)
