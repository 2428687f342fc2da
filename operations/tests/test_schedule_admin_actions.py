"""The periodic-task admin's list actions ask what the console asks (operations/admin.py):
switching needs the change permission and is audited; running goes through "run now"."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from taskconsole.models import AuditAction, AuditEntry

pytestmark = [pytest.mark.django_db]

CHANGELIST = "/admin/django_celery_beat/periodictask/"


def staff(django_user_model, username: str, *codenames: str) -> Client:
    user = django_user_model.objects.create_user(username, password="pw-123456", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def act(client: Client, action: str, *tasks: PeriodicTask):
    data = {"action": action, "_selected_action": [t.pk for t in tasks], "index": 0}
    return client.post(CHANGELIST, data, HTTP_ACCEPT_LANGUAGE="en")


@pytest.fixture
def nightly() -> PeriodicTask:
    return PeriodicTask.objects.create(
        name="nightly-add",
        task="app.tasks.add",
        args="[1, 2]",
        crontab=CrontabSchedule.objects.create(minute="0", hour="3"),
    )


@pytest.mark.parametrize("action", ["enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks"])
def test_a_staff_member_who_may_only_view_schedules_gets_no_action(
    django_user_model, nightly, sent, action
) -> None:
    viewer = staff(django_user_model, "viewer", "view_periodictask")
    page = viewer.get(CHANGELIST).content.decode()
    assert f'value="{action}"' not in page
    act(viewer, action, nightly)
    nightly.refresh_from_db()
    assert nightly.enabled
    assert sent == []
    assert not AuditEntry.objects.exists()


def test_switching_needs_the_change_permission_and_is_audited(django_user_model, nightly) -> None:
    editor = staff(django_user_model, "editor", "view_periodictask", "change_periodictask")
    assert 'value="toggle_tasks"' in editor.get(CHANGELIST).content.decode()
    act(editor, "disable_tasks", nightly)
    nightly.refresh_from_db()
    assert not nightly.enabled
    act(editor, "toggle_tasks", nightly)
    nightly.refresh_from_db()
    assert nightly.enabled
    entries = list(AuditEntry.objects.order_by("id").values_list("action", "target"))
    assert entries == [
        (AuditAction.SCHEDULE_DISABLE, "nightly-add"),
        (AuditAction.SCHEDULE_ENABLE, "nightly-add"),
    ]


def test_running_goes_through_the_consoles_run_now(django_user_model, nightly, sent) -> None:
    internal = PeriodicTask.objects.create(
        name="sweep",
        task="taskconsole.tasks.sweep_lost_tasks",
        crontab=CrontabSchedule.objects.create(minute="5", hour="3"),
    )
    editor = staff(django_user_model, "editor", "view_periodictask", "change_periodictask")
    response = act(editor, "run_tasks", nightly)
    # The admin's change permission is not the console's: "run now" asks for its own.
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert said == ["nightly-add: You may not change periodic tasks."]
    assert sent == []

    operator = staff(
        django_user_model,
        "operator",
        "view_periodictask",
        "change_periodictask",
        "change_schedule",
        "launch_task",
        "view_taskrecord",
    )
    response = act(operator, "run_tasks", nightly, internal)
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert said == [
        "sweep: This periodic task runs taskconsole.tasks.sweep_lost_tasks, which cannot be "
        "started by hand.",
        "1 task was queued to run now.",
    ]
    [message] = sent
    assert message["headers"]["task"] == "app.tasks.add"
    assert AuditEntry.objects.filter(action=AuditAction.SCHEDULE_RUN, target="nightly-add").exists()
