"""Where a task came from, for publishers that stamp nothing of their own."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery import current_app
from celery.beat import ScheduleEntry, Scheduler
from django.test import Client, override_settings

from taskconsole import buffer, context
from taskconsole.models import Origin, TaskRecord

pytestmark = pytest.mark.django_db


def test_a_run_sent_by_celerys_own_beat_scheduler_is_beats(sent) -> None:
    # CELERY_BEAT_SCHEDULE under Celery's default scheduler: no periodic_task_name header.
    entry = ScheduleEntry(
        name="add every 30 s",
        task="app.tasks.add",
        schedule=timedelta(seconds=30),
        args=(1, 2),
        app=current_app,
    )
    with current_app.producer_or_acquire() as producer:
        Scheduler(current_app, lazy=True).apply_entry(entry, producer=producer)
    buffer.flush()
    [message] = sent
    record = TaskRecord.objects.get(task_id=message["headers"]["id"])
    assert (record.origin, record.origin_detail) == (Origin.BEAT, "add every 30 s")
    assert "periodic_task_name" not in message["headers"]


def _recorded(message: dict) -> TaskRecord:
    buffer.flush()
    return TaskRecord.objects.get(task_id=message["headers"]["id"])


@override_settings(TUTORIAL_VIEWS_ENABLED=True)
def test_a_task_started_by_an_anonymous_visit_is_a_web_request(sent, make_user) -> None:
    # The tutorial's /test/ view, opened by someone who is not signed in. The query string is
    # not recorded: it may carry a token.
    response = Client().get("/test/?token=not-kept")
    assert response.content == b"Celery works"
    [message] = sent
    record = _recorded(message)
    assert (record.origin, record.owner, record.origin_detail) == (Origin.WEB, None, "/test/")
    assert context.current_launcher() is None  # nothing is left behind after the request
    # The console says so, in both languages.
    viewer = Client()
    viewer.force_login(make_user("view", "view_all"))
    page = viewer.get("/console/").content.decode()
    assert "A web request" in page
    assert "Code (shell, script, command)" not in page
    assert "/test/" in page
    viewer.post("/i18n/setlang/", {"language": "zh-hans", "next": "/console/"})
    page = viewer.get("/console/").content.decode()
    assert "网页请求" in page
    assert "代码（shell、脚本、命令）" not in page


@override_settings(TUTORIAL_VIEWS_ENABLED=True)
def test_a_task_started_by_a_signed_in_visit_is_a_web_request_with_its_user(
    sent, make_user
) -> None:
    user = make_user()
    client = Client()
    client.force_login(user)
    assert client.get("/test/apply_async/").status_code == 200
    [message] = sent
    record = _recorded(message)
    assert (record.origin, record.owner, record.origin_detail) == (
        Origin.WEB,
        user,
        "/test/apply_async/",
    )
    # Stamped on the message too, so the tasks it starts belong to the same person.
    assert message["headers"]["taskconsole_owner"] == user.pk


def test_a_task_sent_outside_a_request_is_codes(sent) -> None:
    from app.tasks import add

    add.delay(1, 2)
    [message] = sent
    record = _recorded(message)
    assert (record.origin, record.owner, record.origin_detail) == (Origin.CODE, None, "")
