"""The admin shows what the tutorial's screenshots show: results and periodic tasks."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_celery_results.models import TaskResult


@pytest.fixture
def admin_client_logged_in(db) -> Client:
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-123456!")
    client = Client()
    client.force_login(user)
    return client


def test_task_result_admin_shows_id_name_args_status_result_and_dates(
    admin_client_logged_in: Client,
) -> None:
    row = TaskResult.objects.create(
        task_id="0b6a1d5e-4f3c-4a57-9a38-1f3c9bcb1a11",
        task_name="app.tasks.add",
        task_args='"(3, 5)"',
        task_kwargs='"{}"',
        status="SUCCESS",
        result="8",
        date_started=timezone.now(),
        worker="celery@example",
    )
    listing = admin_client_logged_in.get("/admin/django_celery_results/taskresult/").content
    assert row.task_id.encode() in listing
    assert b"app.tasks.add" in listing
    assert b"SUCCESS" in listing
    detail = admin_client_logged_in.get(
        f"/admin/django_celery_results/taskresult/{row.pk}/change/"
    ).content.decode()
    for text in ("(3, 5)", "app.tasks.add", "SUCCESS", "celery@example", "Completed DateTime"):
        assert text in detail


def test_periodic_task_admin_adds_a_crontab_task(admin_client_logged_in: Client) -> None:
    crontab = CrontabSchedule.objects.create(
        minute="30", hour="7", day_of_week="1", timezone="Asia/Shanghai"
    )
    response = admin_client_logged_in.post(
        "/admin/django_celery_beat/periodictask/add/",
        {
            "name": "add-from-admin",
            "regtask": "app.tasks.add",
            "task": "",
            "crontab": crontab.pk,
            "args": "[7, 8]",
            "kwargs": "{}",
            "enabled": "on",
            "expire_seconds": "",
            "priority": "",
            "queue": "",
            "exchange": "",
            "routing_key": "",
            "headers": "{}",
            "description": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    task = PeriodicTask.objects.get(name="add-from-admin")
    assert task.task == "app.tasks.add"
    assert task.crontab == crontab
    assert task.args == "[7, 8]"
