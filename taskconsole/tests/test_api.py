"""The JSON API: every endpoint, the permission matrix, CSRF, tokens, bad input."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from celery import current_app
from django.test import Client
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from taskconsole import context
from taskconsole.models import ApiToken, AuditEntry, Origin, TaskRecord, TaskStatus
from taskconsole.signals import task_cancelled

pytestmark = pytest.mark.django_db

API = "/console/api"


def make_record(owner=None, **fields) -> TaskRecord:
    n = TaskRecord.objects.count()
    defaults = {
        "task_id": f"tid-{n}",
        "name": "tc_tests.fail",
        "origin": Origin.CONSOLE,
        "owner": owner,
        "kwargs": {"message": "x"},
    }
    return TaskRecord.objects.create(**{**defaults, **fields})


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_json(client: Client, url: str, data=None, **extra):
    return client.post(url, json.dumps(data or {}), content_type="application/json", **extra)


@pytest.fixture
def people(make_user):
    owner = make_user("view", "launch", "cancel")
    other = make_user("view", "launch", "cancel")
    staff = make_user("view_all", "launch", "cancel", "schedule", staff=True)
    return owner, other, staff


@pytest.mark.parametrize(
    ("who", "status"), [("anonymous", 401), ("owner", 200), ("other", 404), ("staff", 200)]
)
def test_task_detail_permission_matrix(people, who, status) -> None:
    owner, other, staff = people
    row = make_record(owner)
    client = {
        "anonymous": Client(),
        "owner": login(owner),
        "other": login(other),
        "staff": login(staff),
    }[who]
    response = client.get(f"{API}/tasks/{row.task_id}/")
    assert response.status_code == status
    if status == 200:
        assert response.json()["task_id"] == row.task_id


def test_list_shows_own_tasks_or_all_for_staff(people, make_user) -> None:
    owner, other, staff = people
    mine = make_record(owner)
    theirs = make_record(other)
    own_ids = {t["task_id"] for t in login(owner).get(f"{API}/tasks/").json()["results"]}
    assert own_ids == {mine.task_id}
    all_ids = {t["task_id"] for t in login(staff).get(f"{API}/tasks/").json()["results"]}
    assert all_ids == {mine.task_id, theirs.task_id}
    assert login(make_user()).get(f"{API}/tasks/").status_code == 403
    assert Client().get(f"{API}/tasks/").status_code == 401


def test_keyset_pagination_and_filters(people) -> None:
    _, _, staff = people
    rows = [
        make_record(staff, status=TaskStatus.SUCCESS if i % 2 else TaskStatus.FAILURE)
        for i in range(5)
    ]
    client = login(staff)
    first = client.get(f"{API}/tasks/?limit=2").json()
    assert [t["task_id"] for t in first["results"]] == [rows[4].task_id, rows[3].task_id]
    second = client.get(f"{API}/tasks/?limit=2&cursor={first['next_cursor']}").json()
    assert [t["task_id"] for t in second["results"]] == [rows[2].task_id, rows[1].task_id]
    failed = client.get(f"{API}/tasks/?status=FAILURE").json()["results"]
    assert {t["task_id"] for t in failed} == {rows[0].task_id, rows[2].task_id, rows[4].task_id}
    assert client.get(f"{API}/tasks/?name=nothing").json()["results"] == []


def test_launch_publishes_one_message_and_audits(people, sent) -> None:
    owner, _, _ = people
    response = post_json(
        login(owner), f"{API}/launch/", {"task": "tc_tests.progress", "arguments": {"steps": 3}}
    )
    assert response.status_code == 201
    task_id = response.json()["task_id"]
    assert len(sent) == 1
    assert sent[0]["headers"]["id"] == task_id
    assert sent[0]["body"][1] == {"steps": 3, "delay": 0.3}
    row = TaskRecord.objects.get(task_id=task_id)
    assert row.owner == owner
    assert row.origin == Origin.CONSOLE
    assert AuditEntry.objects.get(target=task_id).user == owner


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"task": "no.such.task"}, 404, "unknown_task"),
        ({"task": "celery.backend_cleanup"}, 403, "not_launchable"),
        ({"task": "celery.chord_unlock"}, 403, "not_launchable"),
        ({"task": "app.tasks.ping"}, 403, "not_launchable"),
        ({"task": "app.tasks.add", "arguments": {"x": "three", "y": 1}}, 400, "invalid_arguments"),
        ({"task": "app.tasks.add", "arguments": {"x": 1}}, 400, "invalid_arguments"),
        ({"task": "app.tasks.add", "arguments": [1, 2]}, 400, "invalid_arguments"),
        ({"task": "app.tasks.crunch_numbers", "arguments": {"n": -1}}, 400, "invalid_arguments"),
        ({"task": "tc_tests.fail", "arguments": {"message": "x" * 500}}, 400, "invalid_arguments"),
        (
            {"task": "tc_tests.fail", "arguments": {"message": "x" * 20000}},
            413,
            "arguments_too_large",
        ),
        ({"task": ["app.tasks.add"]}, 400, "invalid_task"),
        ({"arguments": {"x": 1, "y": 2}}, 400, "invalid_task"),
        ({"task": 3}, 400, "invalid_task"),
        # A misspelt argument is refused, not dropped.
        (
            {"task": "app.tasks.add", "arguments": {"x": 1, "y": 2, "z": 3}},
            400,
            "invalid_arguments",
        ),
    ],
)
def test_rejected_launches_publish_nothing(people, sent, payload, status, code) -> None:
    owner, _, _ = people
    response = post_json(login(owner), f"{API}/launch/", payload)
    assert response.status_code == status
    assert response.json()["error"] == code
    assert sent == []
    assert not TaskRecord.objects.exists()
    assert not AuditEntry.objects.exists()


def test_bad_bodies_and_methods(people, sent) -> None:
    owner, _, _ = people
    client = login(owner)
    assert (
        client.post(f"{API}/launch/", "{nope", content_type="application/json").status_code == 400
    )
    assert client.post(f"{API}/launch/", "[1]", content_type="application/json").status_code == 400
    # Nested far deeper than any argument needs, yet within the size limit: refused, not a 500.
    deep = '{"task": "app.tasks.add", "arguments": {"x": ' + "[" * 5000 + "]" * 5000 + "}}"
    response = client.post(f"{API}/launch/", deep, content_type="application/json")
    assert (response.status_code, response.json()["error"]) == (400, "invalid_json")
    # Valid JSON that Python refuses to read: said as it is, not as invalid JSON.
    long_number = '{"task": "app.tasks.add", "arguments": {"x": ' + "9" * 5000 + ', "y": 1}}'
    response = client.post(f"{API}/launch/", long_number, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"] == "A number in the request body has too many digits."
    assert client.get(f"{API}/launch/").status_code == 405
    assert client.post(f"{API}/tasks/").status_code == 405
    huge = json.dumps({"task": "app.tasks.add", "arguments": {"x": 1, "pad": "y" * 40000}})
    assert client.post(f"{API}/launch/", huge, content_type="application/json").status_code == 413
    assert sent == []


def test_launch_needs_the_launch_permission(make_user, sent) -> None:
    viewer = make_user("view")
    response = post_json(
        login(viewer), f"{API}/launch/", {"task": "app.tasks.add", "arguments": {"x": 1, "y": 2}}
    )
    assert response.status_code == 403
    assert sent == []


def test_csrf_is_enforced_for_sessions_not_for_tokens(people, sent) -> None:
    owner, _, _ = people
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    payload = {"task": "app.tasks.add", "arguments": {"x": 1, "y": 2}}
    response = post_json(browser, f"{API}/launch/", payload)
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_failed"
    assert sent == []
    browser.get("/console/")  # sets the CSRF cookie
    token = browser.cookies["csrftoken"].value
    assert post_json(browser, f"{API}/launch/", payload, HTTP_X_CSRFTOKEN=token).status_code == 201

    _, key = ApiToken.issue(owner)
    script = Client(enforce_csrf_checks=True)
    response = post_json(script, f"{API}/launch/", payload, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 201
    assert TaskRecord.objects.get(task_id=response.json()["task_id"]).owner == owner
    bad = post_json(script, f"{API}/launch/", payload, HTTP_AUTHORIZATION=f"Token {key}x")
    assert bad.status_code == 401
    assert len(sent) == 2


def test_token_is_stored_hashed() -> None:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("t")
    token, key = ApiToken.issue(user)
    assert key.split(".", 1)[1] not in token.key_hash
    assert token.matches(key.split(".", 1)[1])
    assert not token.matches("wrong")


def test_cancel_permission_matrix_and_states(people, make_user, sent) -> None:
    owner, other, staff = people
    row = make_record(owner, status=TaskStatus.QUEUED)
    assert login(other).post(f"{API}/tasks/{row.task_id}/cancel/").status_code == 404
    viewer = make_user("view")
    row.owner = viewer
    row.save()
    assert login(viewer).post(f"{API}/tasks/{row.task_id}/cancel/").status_code == 403
    response = login(staff).post(f"{API}/tasks/{row.task_id}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "REVOKED"
    row.refresh_from_db()
    assert row.cancel_requested_at is not None
    assert AuditEntry.objects.filter(action="cancel", target=row.task_id, user=staff).exists()
    # A finished task cannot be cancelled; a running one only if its policy allows.
    assert login(staff).post(f"{API}/tasks/{row.task_id}/cancel/").status_code == 409
    running = make_record(owner, name="tc_tests.sleep_norevoke", status=TaskStatus.STARTED)
    response = login(owner).post(f"{API}/tasks/{running.task_id}/cancel/")
    assert response.status_code == 409
    assert response.json()["error"] == "cannot_terminate"


def test_cancel_of_a_task_that_started_meanwhile_is_treated_as_running(people, sent) -> None:
    owner, _, staff = people
    row = make_record(owner, name="tc_tests.sleep_norevoke", status=TaskStatus.QUEUED)
    stale = TaskRecord.objects.get(pk=row.pk)
    # The worker starts it between the console's read and its write.
    TaskRecord.objects.filter(pk=row.pk).update(status=TaskStatus.STARTED)
    with mock.patch("taskconsole.actions._visible_or_404", return_value=stale):
        response = login(staff).post(f"{API}/tasks/{row.task_id}/cancel/")
    assert response.status_code == 409
    assert response.json()["error"] == "cannot_terminate"
    row.refresh_from_db()
    assert row.status == TaskStatus.STARTED
    assert row.cancel_requested_at is None


@pytest.fixture
def cancellations():
    """What taskconsole.signals.task_cancelled tells its receivers, in order."""
    heard: list[dict] = []

    def receiver(sender=None, signal=None, **kwargs) -> None:
        heard.append(kwargs)

    task_cancelled.connect(receiver, dispatch_uid="test_heard")
    yield heard
    task_cancelled.disconnect(dispatch_uid="test_heard")


def test_a_cancelled_waiting_task_is_announced_once_committed(
    people, sent, cancellations, django_capture_on_commit_callbacks
) -> None:
    owner, _, staff = people
    row = make_record(owner, status=TaskStatus.QUEUED, args=[3], kwargs={"message": "x"})
    with django_capture_on_commit_callbacks() as callbacks:
        response = login(staff).post(f"{API}/tasks/{row.task_id}/cancel/")
        assert cancellations == []
    assert response.status_code == 200
    for callback in callbacks:
        callback()
    assert cancellations == [
        {
            "task_id": row.task_id,
            "name": "tc_tests.fail",
            "args": [3],
            "kwargs": {"message": "x"},
            "terminated": False,
            "expired": False,
        }
    ]
    # A running task is announced by the worker that stops it, not by the console.
    running = make_record(owner, name="tc_tests.sleep", status=TaskStatus.STARTED)
    with django_capture_on_commit_callbacks(execute=True):
        assert login(owner).post(f"{API}/tasks/{running.task_id}/cancel/").status_code == 200
    assert len(cancellations) == 1


def test_a_worker_announces_what_the_console_did_not(cancellations, monkeypatch) -> None:
    from types import SimpleNamespace

    from taskconsole import capture

    # A worker's handler starts by closing stale connections: not this test's transaction.
    monkeypatch.setattr(capture, "close_old_connections", lambda: None)

    task = SimpleNamespace(name="tc_tests.fail")
    waiting = make_record(status=TaskStatus.QUEUED, args=[1])
    cancelled = make_record(status=TaskStatus.REVOKED)  # the console announced it
    running = make_record(status=TaskStatus.REVOKED)  # taken for waiting, then stopped
    capture.on_revoked(sender=task, request=SimpleNamespace(id=waiting.task_id), expired=True)
    capture.on_revoked(sender=task, request=SimpleNamespace(id=cancelled.task_id))
    capture.on_revoked(sender=task, request=SimpleNamespace(id=running.task_id), terminated=True)
    assert [(c["task_id"], c["args"], c["expired"], c["terminated"]) for c in cancellations] == [
        (waiting.task_id, [1], True, False),
        (running.task_id, [], False, True),
    ]
    assert TaskRecord.objects.get(pk=waiting.pk).status == TaskStatus.REVOKED


def test_when_cancelled_hands_an_app_only_its_own_tasks() -> None:
    from taskconsole.signals import Cancellation, announce_cancelled, when_cancelled

    got: list[Cancellation] = []
    when_cancelled(["shop.tasks.ship"], got.append, dispatch_uid="test_when_cancelled")
    try:
        announce_cancelled("t-1", "shop.tasks.ship", [7], terminated=True)
        announce_cancelled("t-2", "shop.tasks.other", [8])
    finally:
        task_cancelled.disconnect(dispatch_uid="test_when_cancelled")
    assert got == [Cancellation("t-1", "shop.tasks.ship", [7], {}, terminated=True)]
    assert got[0].reason("expired", "stopped", "cancelled") == "stopped"


def test_a_receiver_that_fails_does_not_fail_the_cancel(
    people, sent, caplog, django_capture_on_commit_callbacks
) -> None:
    owner, _, staff = people
    row = make_record(owner, status=TaskStatus.QUEUED)

    def broken(**kwargs) -> None:
        raise RuntimeError("receiver is broken")

    task_cancelled.connect(broken, dispatch_uid="test_broken")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = login(staff).post(f"{API}/tasks/{row.task_id}/cancel/")
    finally:
        task_cancelled.disconnect(dispatch_uid="test_broken")
    assert response.status_code == 200
    assert response.json()["status"] == "REVOKED"
    assert "a receiver of task_cancelled, failed for tc_tests.fail" in caplog.text
    assert "receiver is broken" in caplog.text


def test_retry_rules(people, sent) -> None:
    owner, other, _ = people
    failed = make_record(owner, status=TaskStatus.FAILURE)
    assert login(other).post(f"{API}/tasks/{failed.task_id}/retry/").status_code == 404
    response = login(owner).post(f"{API}/tasks/{failed.task_id}/retry/")
    assert response.status_code == 201
    new = TaskRecord.objects.get(task_id=response.json()["task_id"])
    assert new.retry_of == failed
    assert new.kwargs == failed.kwargs
    ok = make_record(owner, status=TaskStatus.SUCCESS)
    assert login(owner).post(f"{API}/tasks/{ok.task_id}/retry/").status_code == 409
    secret = make_record(owner, status=TaskStatus.FAILURE, redacted=True)
    assert login(owner).post(f"{API}/tasks/{secret.task_id}/retry/").json()["error"] == "redacted"
    builtin = make_record(owner, status=TaskStatus.FAILURE, name="celery.backend_cleanup")
    assert login(owner).post(f"{API}/tasks/{builtin.task_id}/retry/").status_code == 403
    assert len(sent) == 1


def test_launchables_and_openapi(people) -> None:
    owner, _, _ = people
    names = {i["name"] for i in login(owner).get(f"{API}/launchables/").json()["results"]}
    assert {"app.tasks.add", "app.tasks.crunch_numbers", "tc_tests.progress"} <= names
    anonymous = Client().get(f"{API}/openapi.json")
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "not_authenticated")
    doc = login(owner).get(f"{API}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/launch/" in doc["paths"]
    assert "Args_app_tasks_add" in doc["components"]["schemas"]
    assert doc["components"]["schemas"]["Args_app_tasks_add"]["required"] == ["x", "y"]


def test_periodic_endpoints(people, make_user, sent) -> None:
    owner, _, staff = people
    every = IntervalSchedule.objects.create(every=30, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(
        name="p1", task="app.tasks.add", interval=every, args="[1, 2]"
    )
    rows = login(owner).get(f"{API}/periodic/").json()["results"]
    assert rows[0]["name"] == "p1"
    assert rows[0]["description_en"] == "Every 30 seconds"
    assert rows[0]["description_zh"] == "每 30 秒"
    assert len(rows[0]["next_runs"]) == 3
    assert login(owner).post(f"{API}/periodic/{task.pk}/disable/").status_code == 403
    assert login(staff).post(f"{API}/periodic/{task.pk}/disable/").json()["enabled"] is False
    assert login(staff).post(f"{API}/periodic/{task.pk}/enable/").json()["enabled"] is True
    response = login(staff).post(f"{API}/periodic/{task.pk}/run/")
    assert response.status_code == 201
    run = TaskRecord.objects.get(task_id=response.json()["task_id"])
    assert run.origin_detail == "p1"
    assert run.args == [1, 2]
    assert login(staff).post(f"{API}/periodic/999/run/").status_code == 404
    assert login(staff).post(f"{API}/periodic/{task.pk}/explode/").status_code == 404
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["schedule_disable", "schedule_enable", "schedule_run"]
    assert len(sent) == 1


def test_periodic_rows_beat_cannot_read_are_named_not_a_500(people) -> None:
    from django_celery_beat.models import CrontabSchedule

    owner = people[0]
    # Made outside the admin's checks (the shell, an older release): Celery cannot read them.
    huge = IntervalSchedule.objects.create(every=10**15, period=IntervalSchedule.DAYS)
    never = CrontabSchedule.objects.create(hour="-1", minute="0")
    PeriodicTask.objects.create(name="huge", task="app.tasks.add", interval=huge)
    PeriodicTask.objects.create(name="never", task="app.tasks.add", crontab=never)
    fine = IntervalSchedule.objects.create(every=30, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="fine", task="app.tasks.add", interval=fine)
    response = login(owner).get(f"{API}/periodic/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()["results"]}
    # Their words are what the rows say; their next runs cannot be computed.
    assert "hour -1" in rows["never"]["description_en"]
    assert rows["huge"]["description_en"] == "Every 1000000000000000 days"
    assert rows["huge"]["next_runs"] == rows["never"]["next_runs"] == []
    assert rows["fine"]["description_en"] == "Every 30 seconds"
    page = login(owner).get("/console/periodic/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert page.status_code == 200
    assert "每 30 秒" in page.content.decode()


def test_workers_and_audit_endpoints(people) -> None:
    owner, _, staff = people
    fake = mock.MagicMock()
    fake.ping.return_value = {"w1@host": {"ok": "pong"}}
    fake.stats.return_value = {
        "w1@host": {"pool": {"implementation": "prefork", "max-concurrency": 2}, "total": {"a": 3}}
    }
    fake.active.return_value = {
        "w1@host": [
            {"id": "abc", "name": "app.tasks.add"},
            {"id": "xyz", "name": "app.tasks.secret_report"},
        ]
    }
    make_record(owner, task_id="abc", name="app.tasks.add", status=TaskStatus.STARTED)
    make_record(staff, task_id="xyz", name="app.tasks.secret_report", status=TaskStatus.STARTED)
    # On the app's own Control: `inspect` is a cached property, so another test that asked
    # workers first has it stored on the instance, where a class-level patch cannot reach.
    with mock.patch.object(current_app.control, "inspect", return_value=fake):
        data = login(owner).get(f"{API}/workers/").json()
        everything = login(staff).get(f"{API}/workers/").json()
        panel = login(owner).get("/console/workers/?fragment=1").content.decode()
    # Someone else's running task is counted, not named: its page would answer 404 anyway.
    assert data["workers"] == [
        {
            "name": "w1@host",
            "pool": "prefork",
            "concurrency": 2,
            "processed": 3,
            "active": [{"task_id": "abc", "name": "app.tasks.add"}],
            "active_hidden": 1,
        }
    ]
    assert "secret_report" not in panel
    assert "xyz" not in panel
    assert "1 task of other users" in panel
    assert [t["task_id"] for t in everything["workers"][0]["active"]] == ["abc", "xyz"]
    assert everything["workers"][0]["active_hidden"] == 0
    assert {q["name"] for q in data["queues"]} == {"default", "heavy_tasks"}
    assert len(data["throughput"]) == 60
    AuditEntry.objects.create(user=owner, action="launch", target="x")
    AuditEntry.objects.create(user=staff, action="launch", target="y")
    assert [e["target"] for e in login(owner).get(f"{API}/audit/").json()["results"]] == ["x"]
    assert len(login(staff).get(f"{API}/audit/").json()["results"]) == 2


def test_argument_errors_are_in_the_users_language(people, sent) -> None:
    owner, _, _ = people
    payload = {"task": "app.tasks.add", "arguments": {"x": "three"}}
    english = post_json(login(owner), f"{API}/launch/", payload, HTTP_ACCEPT_LANGUAGE="en")
    assert english.json()["errors"] == {
        "x": ["Input should be a valid integer, not a string"],
        "y": ["Field required"],
    }
    chinese = post_json(login(owner), f"{API}/launch/", payload, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert chinese.status_code == 400
    assert chinese.json()["errors"] == {
        "x": ["应为整数，而不是字符串"],
        "y": ["必填字段"],
    }
    bounded = {"task": "app.tasks.crunch_numbers", "arguments": {"n": -1}}
    [message] = post_json(
        login(owner), f"{API}/launch/", bounded, HTTP_ACCEPT_LANGUAGE="zh-hans"
    ).json()["errors"]["n"]
    assert message.startswith("应大于或等于 ")
    assert sent == []


@pytest.fixture
def eager():
    """CELERY_TASK_ALWAYS_EAGER, as a project's own tests often set it."""
    conf = current_app.conf
    before = (conf.task_always_eager, conf.task_eager_propagates)
    conf.task_always_eager = True
    yield conf
    conf.task_always_eager, conf.task_eager_propagates = before


def test_a_launch_in_eager_mode_belongs_to_its_launcher(people, eager) -> None:
    owner, other, _ = people
    launched = {"task": "tc_tests.progress", "arguments": {"steps": 1, "delay": 0}}
    response = post_json(login(owner), f"{API}/launch/", launched)
    assert response.status_code == 201
    task_id = response.json()["task_id"]
    record = TaskRecord.objects.get(task_id=task_id)
    assert (record.origin, record.owner, record.status) == (Origin.CONSOLE, owner, "SUCCESS")
    assert record.result == "1"
    assert login(owner).get(f"{API}/tasks/{task_id}/").status_code == 200
    assert login(other).get(f"{API}/tasks/{task_id}/").status_code == 404


def test_a_task_failing_in_eager_mode_is_a_failed_task_not_a_broker_error(people, eager) -> None:
    eager.task_eager_propagates = True
    owner, _, _ = people
    launched = {"task": "tc_tests.fail", "arguments": {"message": "no stock"}}
    response = post_json(login(owner), f"{API}/launch/", launched)
    assert response.status_code == 201
    record = TaskRecord.objects.get(task_id=response.json()["task_id"])
    assert (record.status, record.exception) == (TaskStatus.FAILURE, "ValueError: no stock")
    assert (record.origin, record.owner) == (Origin.CONSOLE, owner)


def test_the_queues_panel_lists_routed_queues_and_tasks_own(monkeypatch) -> None:
    from kombu import Queue

    from taskconsole import queries

    conf = current_app.conf
    before = conf.task_routes, conf.task_queues
    conf.task_routes = {"feeds.*": {"queue": "feeds"}, "x.y": "bulk"}
    conf.task_queues = (Queue("default"), Queue("heavy_tasks"))
    task = current_app.tasks["app.tasks.add"]
    monkeypatch.setattr(task, "queue", "own", raising=False)
    try:
        names = queries.queue_names()
    finally:
        conf.task_routes, conf.task_queues = before
    assert names[:2] == ["default", "heavy_tasks"]
    assert {"feeds", "bulk", "own"} <= set(names)
    assert len(names) == len(set(names))


def test_eager_tasks_inside_an_eager_task_all_belong_to_the_launcher(people, eager) -> None:
    from celery import shared_task
    from pydantic import BaseModel

    from taskconsole import registry

    @shared_task(name="tc_tests.eager_leaf")
    def leaf() -> int:
        return 1

    @shared_task(name="tc_tests.eager_parent")
    def parent() -> list[str]:
        # Two children: the first one's end must not leave the second without a launcher.
        return [leaf.delay().id, leaf.delay().id]

    class NoArguments(BaseModel):
        pass

    registry.register(parent, schema=NoArguments, label="Eager parent")
    owner, _, _ = people
    try:
        response = post_json(login(owner), f"{API}/launch/", {"task": "tc_tests.eager_parent"})
    finally:
        registry.unregister("tc_tests.eager_parent")
    assert response.status_code == 201
    children = TaskRecord.objects.filter(name="tc_tests.eager_leaf")
    assert children.count() == 2
    assert {(r.origin, r.owner_id) for r in children} == {(Origin.TASK, owner.pk)}
    assert context.current_launcher() is None


@pytest.mark.parametrize(
    ("language", "detail"),
    [
        ("en", "The task could not be queued: the broker does not answer."),
        ("zh-hans", "任务未能加入队列：消息代理没有响应。"),
    ],
)
def test_a_broker_that_refuses_connections_is_a_503_to_try_again_later(
    people, broker_away, caplog, language, detail
) -> None:
    owner, _, staff = people
    launched = {"task": "tc_tests.progress", "arguments": {"steps": 1}}
    response = post_json(login(owner), f"{API}/launch/", launched, HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    # The sentence alone, in the user's language: the driver's English goes to the log.
    assert response.json() == {"error": "broker_unavailable", "detail": detail}
    [logged] = [r.getMessage() for r in caplog.records if r.name == "taskconsole.actions"]
    assert logged.startswith("Could not publish tc_tests.progress: OperationalError: ")
    assert "Connection refused" in logged
    # The task's record keeps the driver's words as its reason.
    [(status, exception)] = TaskRecord.objects.values_list("status", "exception")
    assert status == TaskStatus.FAILURE
    assert exception.startswith("Not published: OperationalError: ")
    assert "Connection refused" in exception
    assert not AuditEntry.objects.exists()

    # A periodic task's "run now" answers the same.
    every = IntervalSchedule.objects.create(every=30, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(
        name="p1", task="app.tasks.add", interval=every, args="[1, 2]"
    )
    response = login(staff).post(f"{API}/periodic/{task.pk}/run/", HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.json() == {"error": "broker_unavailable", "detail": detail}


def test_a_broker_that_never_answers_leaves_the_task_waiting_not_failed(
    people, broker_silent, caplog
) -> None:
    owner, _, _ = people
    launched = {"task": "tc_tests.progress", "arguments": {"steps": 1}}
    response = post_json(login(owner), f"{API}/launch/", launched, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    # The message may be in the broker's socket, to run once it answers: not "not queued".
    assert response.json() == {
        "error": "broker_unavailable",
        "detail": (
            "消息代理没有及时响应：任务可能仍在队列中。再次启动之前，请先在任务列表中查找它。"
        ),
    }
    [(status, exception)] = TaskRecord.objects.values_list("status", "exception")
    assert (status, exception) == (TaskStatus.QUEUED, "")
    assert any("may still run" in r.getMessage() for r in caplog.records)


def test_only_a_send_that_timed_out_is_unanswered() -> None:
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from operations.testing import raised_from
    from taskconsole.unsent import unanswered

    def wrapped(cause: BaseException) -> BaseException:
        return raised_from(cause, OperationalError)

    assert unanswered(wrapped(RedisTimeoutError("Timeout reading from 127.0.0.1:6379")))
    assert unanswered(wrapped(TimeoutError("timed out")))
    assert not unanswered(wrapped(RedisConnectionError("Error 111 connecting")))
    assert not unanswered(OperationalError("refused"))
    assert not unanswered(None)


def test_a_database_that_does_not_answer_is_a_503_to_try_again_later(people) -> None:
    from django.db import OperationalError

    owner, _, _ = people
    client = login(owner)
    gone = OperationalError("could not connect to server: Connection refused")
    with mock.patch("taskconsole.queries.task_page", side_effect=gone):
        response = client.get(f"{API}/tasks/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.json() == {
        "error": "database_unavailable",
        "detail": "数据库没有响应，请稍后再试。",
    }
