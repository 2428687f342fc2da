"""The HTML pages: same queries and actions as the API, forms, live fragments, languages."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from celery import current_app
from django.test import Client
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from taskconsole import progress
from taskconsole.models import LOST, VANISHED, AuditEntry, Origin, TaskRecord, TaskStatus

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_console_needs_login_and_the_view_permission(make_user) -> None:
    assert Client().get("/console/").status_code == 302
    assert login(make_user()).get("/console/").status_code == 403
    assert login(make_user("view")).get("/console/").status_code == 200


def test_home_page_links_to_the_console(make_user) -> None:
    assert b'href="/console/"' in Client().get("/").content


def test_launch_form_renders_from_the_schema_and_keeps_bad_input(make_user, sent) -> None:
    user = make_user("view", "launch")
    client = login(user)
    page = client.get("/console/launch/app.tasks.add/").content.decode()
    assert 'name="x"' in page
    assert 'type="number"' in page
    response = client.post("/console/launch/app.tasks.add/", {"x": "three", "y": "2"})
    assert response.status_code == 400
    body = response.content.decode()
    assert 'value="three"' in body
    assert "Enter a whole number" in body
    assert sent == []
    response = client.post("/console/launch/app.tasks.add/", {"x": "3", "y": "5"})
    assert response.status_code == 302
    row = TaskRecord.objects.get()
    assert response["Location"] == f"/console/tasks/{row.task_id}/"
    assert row.kwargs == {"x": 3, "y": 5}
    assert row.owner == user
    assert len(sent) == 1
    assert client.get("/console/launch/celery.backend_cleanup/").status_code == 404
    assert login(make_user("view")).get("/console/launch/app.tasks.add/").status_code == 403


def test_detail_page_fragment_shows_progress_and_traceback(make_user) -> None:
    user = make_user("view", "launch")
    row = TaskRecord.objects.create(
        task_id="t1",
        name="tc_tests.fail",
        origin=Origin.CONSOLE,
        owner=user,
        status=TaskStatus.FAILURE,
        traceback="Traceback (most recent call last): boom",
        progress_current=1,
        progress_total=4,
    )
    page = login(user).get(f"/console/tasks/{row.task_id}/").content.decode()
    assert 'data-live-url="?fragment=1"' in page
    fragment = login(user).get(f"/console/tasks/{row.task_id}/?fragment=1").content.decode()
    assert "<html" not in fragment
    assert "Traceback (most recent call last): boom" in fragment
    assert 'id="retry-button"' in fragment
    assert "data-live-final" in fragment
    assert login(make_user("view")).get(f"/console/tasks/{row.task_id}/").status_code == 404


def test_html_cancel_and_retry_go_through_the_actions(make_user, sent) -> None:
    user = make_user("view", "launch", "cancel")
    queued = TaskRecord.objects.create(
        task_id="q1", name="tc_tests.fail", origin=Origin.CONSOLE, owner=user
    )
    client = login(user)
    assert client.post("/console/tasks/q1/cancel/").status_code == 302
    queued.refresh_from_db()
    assert queued.status == TaskStatus.REVOKED
    response = client.post("/console/tasks/q1/retry/")
    new = TaskRecord.objects.exclude(pk=queued.pk).get()
    assert response["Location"] == f"/console/tasks/{new.task_id}/"
    assert new.retry_of == queued
    assert client.get("/console/tasks/q1/cancel/").status_code == 405


def test_list_page_and_its_live_fragment(make_user) -> None:
    user = make_user("view")
    TaskRecord.objects.create(task_id="mine", name="x.y", origin=Origin.USER, owner=user)
    TaskRecord.objects.create(task_id="theirs", name="x.z", origin=Origin.CODE)
    page = login(user).get("/console/?status=QUEUED").content.decode()
    assert "mine" in page
    assert "theirs" not in page
    assert "data-live-url" in page
    fragment = login(user).get("/console/?fragment=1").content.decode()
    assert fragment.strip().startswith("<tr")


def test_periodic_page_in_both_languages_and_admin_edits_are_audited(
    make_user, admin_client, admin_user
) -> None:
    cron = CrontabSchedule.objects.create(
        minute="30", hour="7", day_of_week="1", timezone="Asia/Shanghai"
    )
    task = PeriodicTask.objects.create(
        name="weekly", task="app.tasks.add", crontab=cron, args="[7, 8]"
    )
    user = make_user("view")
    client = login(user)
    en = client.get("/console/periodic/").content.decode()
    assert "At 07:30, on Mondays (Asia/Shanghai)" in en
    assert "Run now" not in en
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/console/periodic/"})
    zh = client.get("/console/periodic/").content.decode()
    assert "每周一 07:30（Asia/Shanghai）" in zh
    assert 'lang="zh-hans"' in zh
    # An edit through the admin is recorded with who made it.
    response = admin_client.post(
        f"/admin/django_celery_beat/periodictask/{task.pk}/change/",
        {
            "name": "weekly",
            "regtask": "app.tasks.add",
            "task": "",
            "crontab": cron.pk,
            "args": "[1, 2]",
            "kwargs": "{}",
            "enabled": "on",
            "priority": "",
            "queue": "",
            "exchange": "",
            "routing_key": "",
            "headers": "{}",
            "expire_seconds": "",
            "description": "",
            "start_time_0": "",
            "start_time_1": "",
            "expires_0": "",
            "expires_1": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert AuditEntry.objects.filter(
        action="schedule_change", target="weekly", user=admin_user
    ).exists()


def test_periodic_actions_from_the_page(make_user, sent) -> None:
    task = PeriodicTask.objects.create(
        name="p",
        task="app.tasks.add",
        args=json.dumps([1, 2]),
        crontab=CrontabSchedule.objects.create(minute="0", hour="0"),
    )
    viewer = login(make_user("view"))
    assert viewer.post(f"/console/periodic/{task.pk}/disable/").status_code == 403
    staff = login(make_user("view_all", "schedule"))
    assert staff.post(f"/console/periodic/{task.pk}/disable/").status_code == 302
    task.refresh_from_db()
    assert not task.enabled
    # Running it by hand is a launch: the launch permission too.
    assert staff.post(f"/console/periodic/{task.pk}/run/").status_code == 403
    assert 'id="run-' not in staff.get("/console/periodic/").content.decode()
    launcher = login(make_user("view_all", "schedule", "launch"))
    assert launcher.post(f"/console/periodic/{task.pk}/run/").status_code == 302
    assert len(sent) == 1


def test_only_tasks_some_app_lets_run_by_hand_can_be_run_now(make_user, sent) -> None:
    """A schedule of a task on no launch list (a sweep of the console's own) runs on its
    schedule only: no button, and a 403 that names it."""
    internal = PeriodicTask.objects.create(
        name="sweep",
        task="taskconsole.tasks.sweep_lost_tasks",
        crontab=CrontabSchedule.objects.create(minute="0", hour="0"),
    )
    listed = PeriodicTask.objects.create(
        name="adder",
        task="app.tasks.add",
        args=json.dumps([1, 2]),
        crontab=CrontabSchedule.objects.create(minute="0", hour="1"),
    )
    client = login(make_user("view_all", "schedule", "launch"))
    page = client.get("/console/periodic/").content.decode()
    assert f'id="run-{listed.pk}"' in page
    assert f'id="run-{internal.pk}"' not in page
    response = client.post(f"/console/api/periodic/{internal.pk}/run/")
    assert response.status_code == 403
    assert "taskconsole.tasks.sweep_lost_tasks" in response.json()["detail"]
    assert sent == []


def test_workers_page_answers_at_once_and_its_panel_draws_the_chart(make_user) -> None:
    user = make_user("view")
    TaskRecord.objects.create(
        task_id="done",
        name="a",
        origin=Origin.CODE,
        owner=user,
        status=TaskStatus.SUCCESS,
        finished_at=__import__("django.utils.timezone", fromlist=["now"]).now(),
    )
    assert b"data-live-now" in login(user).get("/console/workers/").content
    fake = mock.MagicMock()
    fake.ping.return_value = {}
    # On the app's own Control: `inspect` is a cached property, so another test that asked
    # workers first has it stored on the instance, where a class-level patch cannot reach.
    with mock.patch.object(current_app.control, "inspect", return_value=fake):
        panel = login(user).get("/console/workers/?fragment=1").content.decode()
    assert "<svg" in panel
    assert "<rect" in panel
    assert "1 task in the last hour" in panel


def test_audit_page(make_user) -> None:
    user = make_user("view")
    AuditEntry.objects.create(user=user, action="launch", target="abc")
    assert "abc" in login(user).get("/console/audit/").content.decode()


def test_progress_report_is_throttled(make_user, settings) -> None:
    settings.TASKCONSOLE_PROGRESS_INTERVAL = 60
    TaskRecord.objects.create(task_id="p1", name="a", origin=Origin.CODE, status=TaskStatus.STARTED)
    assert progress.report(1, 10, task_id="p1")
    assert not progress.report(2, 10, task_id="p1")
    assert progress.report(10, 10, "done", task_id="p1")
    row = TaskRecord.objects.get()
    assert (row.status, row.progress_current, row.progress_message) == (
        TaskStatus.PROGRESS,
        10,
        "done",
    )
    assert not progress.report(1, 2)  # outside a task: nothing


def test_redaction() -> None:
    from taskconsole.redaction import redact

    value, hit = redact(
        [[1, {"password": "p", "nested": {"API_KEY": "k"}}], {"token": "t", "n": 2}]
    )
    assert value == [
        [1, {"password": "********", "nested": {"API_KEY": "********"}}],
        {"token": "********", "n": 2},
    ]
    assert hit
    assert redact([[1], {"n": 1}]) == ([[1], {"n": 1}], False)


def test_system_checks_pass() -> None:
    from django.core import checks

    found = [m for m in checks.run_checks() if m.id.startswith("taskconsole")]
    # Only the test-only name that no task has is reported; the real launch list is clean.
    assert [(m.id, m.msg.split()[0]) for m in found] == [
        ("taskconsole.W002", "tc_tests.sleep_norevoke")
    ]


def test_a_project_without_the_owner_middleware_is_told_what_it_misses(settings) -> None:
    from django.core import checks

    owner = "taskconsole.middleware.TaskOwnerMiddleware"
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != owner]
    [warning] = [m for m in checks.run_checks() if m.id == "taskconsole.W003"]
    assert "not audited" in warning.msg


@pytest.mark.parametrize(
    ("name", "setting", "expected"),
    [
        ("app.tasks.add", "reliability.delivery.policy_label", "At most once: never runs twice"),
        ("imports.tasks.process_import_file", "reliability.delivery.policy_label", "Idempotent"),
        ("app.tasks.add", None, "Acknowledged on receipt (early ack)"),
        ("imports.tasks.process_import_file", None, "requeued if its worker dies"),
    ],
)
def test_the_detail_page_says_how_the_task_is_delivered(
    make_user, settings, name, setting, expected
) -> None:
    """The project's own words for the policy (reliability), or Celery's flags without it."""
    settings.TASKCONSOLE_DELIVERY_POLICY = setting
    user = make_user("view")
    row = TaskRecord.objects.create(task_id=f"d-{name}-{setting}", name=name, owner=user)
    page = login(user).get(f"/console/tasks/{row.task_id}/").content.decode()
    assert 'id="task-delivery"' in page
    assert expected in page


def test_the_admin_edit_link_is_offered_only_to_whom_the_admin_lets_edit(make_user) -> None:
    from django.contrib.auth.models import Permission

    task = PeriodicTask.objects.create(
        name="p", task="app.tasks.add", crontab=CrontabSchedule.objects.create(minute="0")
    )
    edit = f"/admin/django_celery_beat/periodictask/{task.pk}/change/"
    scheduler = make_user("view", "schedule")
    assert edit not in login(scheduler).get("/console/periodic/").content.decode()
    editor = make_user("view", "schedule", staff=True)
    editor.user_permissions.add(
        Permission.objects.get(
            content_type__app_label="django_celery_beat", codename="change_periodictask"
        )
    )
    editor = type(editor).objects.get(pk=editor.pk)
    page = login(editor).get("/console/periodic/").content.decode()
    assert edit in page
    assert login(editor).get(edit).status_code == 200


def test_a_failed_task_with_redacted_arguments_says_why_it_has_no_retry(make_user) -> None:
    user = make_user("view", "launch")
    record = TaskRecord.objects.create(
        task_id="secret-1",
        name="tc_tests.fail",
        origin=Origin.CONSOLE,
        owner=user,
        status=TaskStatus.FAILURE,
        kwargs={"message": "[redacted]"},
        redacted=True,
    )
    page = login(user).get(f"/console/tasks/{record.task_id}/").content.decode()
    assert 'id="retry-button"' not in page
    assert 'id="retry-redacted"' in page
    assert 'href="/console/launch/tc_tests.fail/"' in page
    record.redacted = False
    record.save()
    page = login(user).get(f"/console/tasks/{record.task_id}/").content.decode()
    assert 'id="retry-button"' in page
    assert 'id="retry-redacted"' not in page


def test_a_name_filter_that_finds_nothing_says_names_match_in_full_and_suggests(
    make_user,
) -> None:
    user = make_user("view")
    TaskRecord.objects.create(task_id="t1", name="app.tasks.add", origin=Origin.CODE, owner=user)
    client = login(user)
    page = client.get("/console/", {"name": "ADD"}).content.decode()
    assert "No task named “ADD”" in page
    assert 'href="?name=app.tasks.add"' in page
    assert '<datalist id="task-names">' in page
    assert '<option value="app.tasks.add">' in page
    page = client.get("/console/", {"name": "app.tasks.add"}).content.decode()
    assert 'id="no-rows"' not in page
    assert "t1" in page
    page = client.get("/console/", {"status": "FAILURE"}).content.decode()
    assert "No tasks match these filters." in page


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("Terminated", "已终止"),
        (
            "Lost: its worker stopped while it ran, perhaps before it finished",
            "丢失：运行它的 worker 在运行中停止了，任务可能已经完成，也可能没有",
        ),
        (
            "Vanished: its message left the queue without reaching a worker (purged, or lost by "
            "the broker)",
            "已消失：它的消息没有到达任何 worker 就离开了队列（被清空，或被消息代理丢失）",
        ),
        ("Not published: EncodeError: no", "未发布：EncodeError: no"),
        ("internal error: KeyError('x')", "内部错误：KeyError(&#x27;x&#x27;)"),
        ("ValueError: boom", "ValueError: boom"),
    ],
)
def test_what_the_console_stores_as_an_exception_is_shown_translated(
    make_user, stored, shown
) -> None:
    user = make_user("view")
    TaskRecord.objects.create(
        task_id="e1", name="a", origin=Origin.CODE, owner=user, status="FAILURE", exception=stored
    )
    page = login(user).get("/console/tasks/e1/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert f"<code>{shown}</code>" in page.content.decode()
    assert TaskRecord.objects.get(task_id="e1").exception == stored


@pytest.mark.parametrize(
    ("exception", "question"),
    [
        (LOST, "it may have finished. Run it again?"),
        (VANISHED, "without its record being written. Run it again?"),
        ("ValueError: boom", None),
    ],
)
def test_retrying_a_lost_or_vanished_task_asks_first(make_user, exception, question) -> None:
    user = make_user("view", "launch")
    TaskRecord.objects.create(
        task_id="lost-1",
        name="tc_tests.fail",
        origin=Origin.CONSOLE,
        owner=user,
        status=TaskStatus.FAILURE,
        exception=exception,
        kwargs={"message": "x"},
    )
    page = login(user).get("/console/tasks/lost-1/").content.decode()
    assert 'id="retry-button"' in page
    if question:
        assert question in page
    else:
        assert "Run it again?" not in page


@pytest.mark.parametrize(
    ("language", "said"),
    [
        ("en", "The task could not be queued: the broker does not answer."),
        ("zh-hans", "任务未能加入队列：消息代理没有响应。"),
    ],
)
def test_the_launch_form_says_the_broker_is_away_in_the_users_language(
    make_user, broker_away, language, said
) -> None:
    client = login(make_user("view", "launch"))
    response = client.post(
        "/console/launch/tc_tests.progress/",
        {"steps": "2", "delay": "0"},
        HTTP_ACCEPT_LANGUAGE=language,
    )
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    body = response.content.decode()
    assert f'<li class="m-error">{said}</li>' in body
    # The driver's own words ("Error 111 connecting to 127.0.0.1:…") are for the log.
    assert "Connection refused" not in body
    assert "127.0.0.1" not in body
    assert 'value="2"' in body


@pytest.mark.parametrize("task_id", ["evil/../../admin", "50%/done", "a b?c#d"])
def test_a_task_id_with_any_characters_is_listed_and_opened(make_user, task_id) -> None:
    """Celery takes any id a publisher gives; one with a "/" used to fail every list showing it."""
    from django.urls import reverse

    user = make_user("view", "cancel")
    TaskRecord.objects.create(task_id=task_id, name="a", origin=Origin.CODE, owner=user)
    client = login(user)
    page = client.get("/console/")
    assert page.status_code == 200
    url = reverse("taskconsole:detail", args=[task_id])
    assert f'href="{url}"' in page.content.decode()
    detail = client.get(url)
    assert detail.status_code == 200
    assert task_id in detail.content.decode().replace("&#x27;", "'")
    api = client.get(reverse("taskconsole:api_task", args=[task_id]))
    assert api.json()["task_id"] == task_id
    assert client.post(reverse("taskconsole:cancel", args=[task_id])).status_code == 302
    assert TaskRecord.objects.get(task_id=task_id).status == TaskStatus.REVOKED
