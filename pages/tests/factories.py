from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import Permission, User

from pages.models import PageInfo


def make_user(*perms: str, **fields: Any) -> User:
    """A user with the given `pages.<codename>` permissions."""
    fields.setdefault("username", uuid.uuid4().hex[:12])
    user = User.objects.create_user(**fields)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def make_page(**fields: Any) -> PageInfo:
    fields.setdefault("url", "https://example.com/")
    for name in ("fetch_task_id", "parse_task_id", "store_task_id"):
        fields.setdefault(name, str(uuid.uuid4()))
    return PageInfo.objects.create(**fields)
