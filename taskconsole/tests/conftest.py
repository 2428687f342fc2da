from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission

from taskconsole import registry

from . import sample_tasks

PERMS = {
    "view": "view_taskrecord",
    "view_all": "view_all_tasks",
    "launch": "launch_task",
    "cancel": "cancel_task",
    "schedule": "change_schedule",
}


@pytest.fixture(autouse=True)
def sample_launchables() -> Iterator[None]:
    sample_tasks.register_all()
    yield
    for name in ("tc_tests.progress", "tc_tests.fail", "tc_tests.sleep", "tc_tests.sleep_norevoke"):
        registry.unregister(name)


@pytest.fixture
def make_user(django_user_model):
    counter = {"n": 0}

    def make(*perms: str, staff: bool = False, username: str | None = None):
        counter["n"] += 1
        user = django_user_model.objects.create_user(
            username=username or f"user{counter['n']}", password="pw-123456", is_staff=staff
        )
        codenames = [PERMS[p] for p in perms]
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="taskconsole", codename__in=codenames)
        )
        return type(user).objects.get(pk=user.pk)

    return make
