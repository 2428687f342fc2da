"""Bad input to the JSON API and the launch form: refused clearly, never quietly reinterpreted.

A: strict argument types; B: "run now" sends what validation checked; C: a body past Django's
DATA_UPLOAD_MAX_MEMORY_SIZE is the API's JSON 413; D: list parameters that mean nothing are a
400; E: no session and no token is a 401 before anything else; F: a body must be JSON by its
Content-Type.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.test import Client, override_settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from pydantic import BaseModel, Field

from taskconsole import registry
from taskconsole.models import AuditEntry, Origin, TaskRecord, TaskStatus

pytestmark = pytest.mark.django_db

API = "/console/api"
ADD = "app.tasks.add"


class FlagArgs(BaseModel):
    on: bool = False
    label: str = ""
    ratio: float = 1.0
    count: int | None = Field(None, ge=0)


@pytest.fixture(autouse=True)
def flags() -> Iterator[None]:
    registry.register("tc_tests.flags", schema=FlagArgs, label="Flags")
    yield
    registry.unregister("tc_tests.flags")


@pytest.fixture
def launcher(make_user):
    return make_user("view", "launch")


def login(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def launch(client: Client, task: str, arguments, **extra):
    body = json.dumps({"task": task, "arguments": arguments})
    return client.post(f"{API}/launch/", body, content_type="application/json", **extra)


# A. Strict types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "arguments", "field"),
    [
        (ADD, {"x": True, "y": 1}, "x"),
        (ADD, {"x": 1, "y": False}, "y"),
        (ADD, {"x": "1_000", "y": 1}, "x"),
        (ADD, {"x": " 2 ", "y": 1}, "x"),
        (ADD, {"x": "1", "y": 1}, "x"),
        # Integral, yet written as a float: refused as the form refuses "1.0".
        (ADD, {"x": 1.0, "y": 1}, "x"),
        (ADD, {"x": 1.5, "y": 1}, "x"),
        (ADD, {"x": None, "y": 1}, "x"),
        (ADD, {"x": [1], "y": 1}, "x"),
        ("tc_tests.flags", {"on": "yes"}, "on"),
        ("tc_tests.flags", {"on": "off"}, "on"),
        ("tc_tests.flags", {"on": 1}, "on"),
        ("tc_tests.flags", {"on": 0.0}, "on"),
        ("tc_tests.flags", {"on": "true"}, "on"),
        ("tc_tests.flags", {"label": 5}, "label"),
        ("tc_tests.flags", {"label": True}, "label"),
        ("tc_tests.flags", {"ratio": "1.5"}, "ratio"),
        ("tc_tests.flags", {"ratio": False}, "ratio"),
    ],
)
def test_a_value_of_another_json_type_is_refused(launcher, sent, task, arguments, field) -> None:
    response = launch(login(launcher), task, arguments)
    assert response.status_code == 400
    data = response.json()
    assert data["error"] == "invalid_arguments"
    assert list(data["errors"]) == [field]
    assert sent == []
    assert not TaskRecord.objects.exists()


def test_the_refusal_says_which_type_was_sent_in_the_users_language(launcher, sent) -> None:
    arguments = {"x": True, "y": 1.0}
    english = launch(login(launcher), ADD, arguments, HTTP_ACCEPT_LANGUAGE="en").json()
    assert english["detail"] == "The arguments are not valid for app.tasks.add."
    assert english["errors"] == {
        "x": ["Input should be a valid integer, not true or false"],
        "y": ["Input should be a valid integer, not a number with a decimal point or an exponent"],
    }
    chinese = launch(login(launcher), ADD, arguments, HTTP_ACCEPT_LANGUAGE="zh-hans").json()
    assert chinese["errors"] == {
        "x": ["应为整数，而不是布尔值 true 或 false"],
        "y": ["应为整数，而不是带小数点或指数的数"],
    }
    flags = {"on": "yes", "label": 3}
    chinese = launch(login(launcher), "tc_tests.flags", flags, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert chinese.json()["errors"] == {
        "on": ["应为布尔值（true 或 false），而不是字符串"],
        "label": ["应为文本，而不是整数"],
    }
    assert sent == []


def test_values_of_the_right_type_are_sent_as_given(launcher, sent) -> None:
    assert launch(login(launcher), ADD, {"x": 2, "y": -3}).status_code == 201
    # A whole number is a number: a float field takes it.
    flags = {"on": True, "label": "1", "ratio": 2, "count": 10**20}
    assert launch(login(launcher), "tc_tests.flags", flags).status_code == 201
    assert [m["body"][1] for m in sent] == [
        {"x": 2, "y": -3},
        {"on": True, "label": "1", "ratio": 2.0, "count": 10**20},
    ]


@pytest.mark.parametrize("typed", ["2", "+2", "-2", "007"])
def test_the_form_reads_an_integer_typed_as_digits(launcher, sent, typed) -> None:
    response = login(launcher).post("/console/launch/app.tasks.add/", {"x": typed, "y": "1"})
    assert response.status_code == 302
    assert sent[0]["body"][1] == {"x": int(typed), "y": 1}


@pytest.mark.parametrize("typed", ["1_000", "1.0", " 2 ", "2e3", "٣", "0x10", "three", "1 000"])
def test_the_form_refuses_what_is_not_an_integer(launcher, sent, typed) -> None:
    response = login(launcher).post(
        "/console/launch/app.tasks.add/", {"x": typed, "y": "1"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 400
    assert "Enter a whole number: digits, with an optional sign." in response.content.decode()
    assert sent == []
    chinese = login(launcher).post(
        "/console/launch/app.tasks.add/", {"x": typed, "y": "1"}, HTTP_ACCEPT_LANGUAGE="zh-hans"
    )
    assert "请输入整数：数字，前面可带正负号。" in chinese.content.decode()


def test_the_form_reads_checkboxes_numbers_and_text(launcher, sent) -> None:
    client = login(launcher)
    url = "/console/launch/tc_tests.flags/"
    ticked = {"on": "on", "label": "1", "ratio": "2.5", "count": "3"}
    assert client.post(url, ticked).status_code == 302
    assert client.post(url, {"ratio": "-1e2"}).status_code == 302
    assert [m["body"][1] for m in sent] == [
        {"on": True, "label": "1", "ratio": 2.5, "count": 3},
        {"on": False, "label": "", "ratio": -100.0, "count": None},
    ]
    for bad in ({"on": "yes"}, {"ratio": "1_0"}, {"ratio": "nan"}, {"ratio": "1e999"}):
        response = client.post(url, bad, HTTP_ACCEPT_LANGUAGE="en")
        assert response.status_code == 400, bad
    body = client.post(url, {"on": "yes"}, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "复选框只有勾选和不勾选：它不会发送这个值。" in body
    body = client.post(url, {"ratio": "x"}, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "请输入数字，例如 42、-1.5 或 2e3。" in body
    assert len(sent) == 2


# B. "Run now" sends the validated values ---------------------------------------------------


def _periodic(args: str = "[]", kwargs: str = "{}", task: str = ADD) -> PeriodicTask:
    every = IntervalSchedule.objects.create(every=30, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(
        name="nightly add", task=task, interval=every, args=args, kwargs=kwargs
    )


@pytest.fixture
def scheduler(make_user):
    return make_user("view", "launch", "schedule")


def test_run_now_refuses_stored_arguments_that_do_not_validate_strictly(scheduler, sent) -> None:
    task = _periodic(args='[true, "1"]')
    response = login(scheduler).post(f"{API}/periodic/{task.pk}/run/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_arguments",
        "detail": "The stored arguments of nightly add are not valid for app.tasks.add: "
        "correct them in the admin.",
        "errors": {
            "x": ["Input should be a valid integer, not true or false"],
            "y": ["Input should be a valid integer, not a string"],
        },
    }
    chinese = login(scheduler).post(
        f"{API}/periodic/{task.pk}/run/", HTTP_ACCEPT_LANGUAGE="zh-hans"
    )
    assert chinese.json()["detail"] == (
        "定期任务 nightly add 保存的参数对 app.tasks.add 无效：请在管理后台中修改。"
    )
    # The page says it too, field by field.
    page = login(scheduler).post(
        f"/console/periodic/{task.pk}/run/", follow=True, HTTP_ACCEPT_LANGUAGE="en"
    )
    text = page.content.decode()
    assert "are not valid for app.tasks.add" in text
    assert "x: Input should be a valid integer, not true or false" in text
    assert sent == []
    assert not AuditEntry.objects.filter(action="schedule_run").exists()


@pytest.mark.parametrize(
    ("args", "kwargs", "sent_args", "sent_kwargs"),
    [
        ("[1, 2]", "{}", [1, 2], {}),
        ("[1]", '{"y": 2}', [1], {"y": 2}),
        ("[]", '{"x": 1, "y": 2}', [], {"x": 1, "y": 2}),
    ],
)
def test_run_now_sends_the_validated_arguments_where_they_were_stored(
    scheduler, sent, args, kwargs, sent_args, sent_kwargs
) -> None:
    task = _periodic(args=args, kwargs=kwargs)
    response = login(scheduler).post(f"{API}/periodic/{task.pk}/run/")
    assert response.status_code == 201
    assert list(sent[0]["body"][0]) == sent_args
    assert sent[0]["body"][1] == sent_kwargs


def test_run_now_sends_the_schemas_defaults_too(scheduler, sent) -> None:
    task = _periodic(kwargs='{"steps": 2}', task="tc_tests.progress")
    assert login(scheduler).post(f"{API}/periodic/{task.pk}/run/").status_code == 201
    assert list(sent[0]["body"][0]) == []
    assert sent[0]["body"][1] == {"steps": 2, "delay": 0.3}


def test_run_now_refuses_stored_arguments_of_the_wrong_shape(scheduler, sent) -> None:
    task = _periodic(args='{"x": 1}')
    response = login(scheduler).post(f"{API}/periodic/{task.pk}/run/")
    assert (response.status_code, response.json()["error"]) == (400, "invalid_arguments")
    assert sent == []


# C. A body past DATA_UPLOAD_MAX_MEMORY_SIZE ------------------------------------------------


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_a_body_past_djangos_limit_is_the_apis_json_413(launcher, sent) -> None:
    big = {"x": 1, "y": 2, "pad": "y" * 2000}
    response = launch(login(launcher), ADD, big, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": "body_too_large",
        "detail": "The request body is too large.",
    }
    chinese = launch(login(launcher), ADD, big, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert chinese.json()["detail"] == "请求体过大。"
    # A form body, which the CSRF check of a session reads for its token: the same answer.
    browser = login(launcher, enforce_csrf_checks=True)
    browser.get("/console/")  # the CSRF cookie
    form = browser.post(f"{API}/launch/", {"pad": "y" * 2000})
    assert (form.status_code, form.json()["error"]) == (413, "body_too_large")
    assert sent == []


# D. List parameters that mean nothing ------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("status=BOGUS", "status"),
        ("status=failure", "status"),
        ("cursor=abc", "cursor"),
        ("cursor=-5", "cursor"),
        ("cursor=0", "cursor"),
        ("cursor=1.5", "cursor"),
        ("cursor=%205", "cursor"),
        ("cursor=" + "9" * 30, "cursor"),
        ("limit=-1", "limit"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=2.0", "limit"),
        ("mine=yes", "mine"),
    ],
)
def test_a_list_parameter_that_means_nothing_is_a_400(launcher, query, parameter) -> None:
    TaskRecord.objects.create(task_id="t1", name=ADD, origin=Origin.CONSOLE, owner=launcher)
    response = login(launcher).get(f"{API}/tasks/?{query}")
    assert response.status_code == 400
    data = response.json()
    assert data["error"] == "invalid_parameter"
    assert data["parameter"] == parameter
    assert f"The parameter {parameter} must be" in data["detail"]


def test_list_parameters_messages_say_what_is_allowed(launcher) -> None:
    client = login(launcher)
    detail = client.get(f"{API}/tasks/?status=BOGUS", HTTP_ACCEPT_LANGUAGE="en").json()["detail"]
    assert detail == (
        "The parameter status must be one of QUEUED, SCHEDULED, STARTED, PROGRESS, RETRY, "
        "SUCCESS, FAILURE, REVOKED, not “BOGUS”."
    )
    chinese = client.get(f"{API}/tasks/?limit=abc", HTTP_ACCEPT_LANGUAGE="zh-hans").json()
    assert (
        chinese["detail"]
        == "参数 limit 应为 1 到 200 之间的整数（更大的数按 200 算），而不是“abc”。"
    )
    chinese = client.get(f"{API}/audit/?cursor=-5", HTTP_ACCEPT_LANGUAGE="zh-hans").json()
    assert chinese["parameter"] == "cursor"
    assert chinese["detail"].startswith("参数 cursor 应为上一页的 next_cursor")


def test_good_list_parameters_still_work_and_a_large_limit_is_clamped(launcher) -> None:
    for n in range(3):
        TaskRecord.objects.create(
            task_id=f"t{n}",
            name=ADD,
            origin=Origin.CONSOLE,
            owner=launcher,
            status=TaskStatus.SUCCESS,
        )
    client = login(launcher)
    assert len(client.get(f"{API}/tasks/?limit=100000").json()["results"]) == 3
    assert len(client.get(f"{API}/tasks/?limit=" + "9" * 5000).json()["results"]) == 3
    assert len(client.get(f"{API}/tasks/?status=&cursor=&limit=").json()["results"]) == 3
    assert len(client.get(f"{API}/tasks/?status=SUCCESS&mine=true").json()["results"]) == 3
    assert client.get(f"{API}/tasks/?status=FAILURE&mine=0").json()["results"] == []
    first = client.get(f"{API}/tasks/?limit=2").json()
    rest = client.get(f"{API}/tasks/?limit=2&cursor={first['next_cursor']}").json()
    assert len(rest["results"]) == 1
    assert rest["next_cursor"] is None
    assert client.get(f"{API}/audit/?cursor=12&limit=5").status_code == 200


def test_the_task_list_page_says_a_bad_filter_instead_of_listing_everything(launcher) -> None:
    TaskRecord.objects.create(task_id="t1", name=ADD, origin=Origin.CONSOLE, owner=launcher)
    client = login(launcher)
    response = client.get("/console/?status=BOGUS", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    body = response.content.decode()
    assert "The parameter status must be one of" in body
    assert 'data-task-id="t1"' not in body
    assert 'data-live-url="' not in body  # nothing to refresh
    fragment = client.get("/console/?status=BOGUS&fragment=1")
    assert fragment.status_code == 400
    assert 'data-task-id="t1"' not in fragment.content.decode()
    chinese = client.get("/console/?cursor=abc", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "参数 cursor 应为上一页的 next_cursor" in chinese.content.decode()
    audit = client.get("/console/audit/?cursor=abc", HTTP_ACCEPT_LANGUAGE="en")
    assert audit.status_code == 400
    assert "The parameter cursor must be" in audit.content.decode()
    assert client.get("/console/?status=QUEUED").status_code == 200


# E. Unauthenticated is a 401 first -----------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer ", "Bearer", "Token "])
def test_a_post_without_session_or_token_is_401_not_a_csrf_failure(sent, authorization) -> None:
    client = Client(enforce_csrf_checks=True)
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    for url in (f"{API}/launch/", f"{API}/tasks/x/cancel/", f"{API}/periodic/1/run/"):
        response = client.post(
            url, json.dumps({"task": ADD}), content_type="application/json", **extra
        )
        assert response.status_code == 401, url
        assert response.json()["error"] == "not_authenticated"
    zh = client.post(
        f"{API}/launch/", "{}", content_type="text/plain", HTTP_ACCEPT_LANGUAGE="zh-hans"
    )
    assert zh.status_code == 401
    assert sent == []


def test_a_signed_in_browser_without_its_csrf_token_is_still_refused(launcher, sent) -> None:
    browser = login(launcher, enforce_csrf_checks=True)
    response = launch(browser, ADD, {"x": 1, "y": 2})
    assert (response.status_code, response.json()["error"]) == (403, "csrf_failed")
    assert sent == []


# F. A body must say it is JSON --------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
        "application/jsonp",
        "",
    ],
)
def test_a_body_of_another_type_is_415(launcher, sent, content_type) -> None:
    body = json.dumps({"task": ADD, "arguments": {"x": 1, "y": 2}})
    response = login(launcher).post(
        f"{API}/launch/", body, content_type=content_type, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 415
    assert response.json() == {
        "error": "unsupported_media_type",
        "detail": "Send the request body as JSON in UTF-8, with Content-Type: application/json.",
    }
    assert sent == []


def test_json_with_or_without_a_charset_is_read(launcher, sent) -> None:
    body = json.dumps({"task": ADD, "arguments": {"x": 1, "y": 2}})
    client = login(launcher)
    for content_type in (
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON; Charset=UTF-8",
    ):
        response = client.post(f"{API}/launch/", body, content_type=content_type)
        assert response.status_code == 201, content_type
    chinese = client.post(
        f"{API}/launch/", body, content_type="text/plain", HTTP_ACCEPT_LANGUAGE="zh-hans"
    )
    assert chinese.json()["detail"] == (
        "请以 UTF-8 的 JSON 发送请求正文，并带上 Content-Type: application/json。"
    )
    assert len(sent) == 3


def test_the_openapi_description_lists_the_new_errors(launcher) -> None:
    doc = login(launcher).get(f"{API}/openapi.json").json()
    assert "415" in doc["paths"]["/launch/"]["post"]["responses"]
    assert (
        "unsupported_media_type"
        in doc["paths"]["/launch/"]["post"]["responses"]["415"]["description"]
    )
    listing = doc["paths"]["/tasks/"]["get"]
    assert "400" in listing["responses"]
    status = next(p for p in listing["parameters"] if p["name"] == "status")
    assert status["schema"]["enum"] == list(TaskStatus.values)
    assert "400" in doc["paths"]["/periodic/{id}/{action}/"]["post"]["responses"]


@pytest.mark.database
def test_a_nul_character_in_a_filter_or_a_task_id_is_refused_not_a_server_error(
    launcher,
) -> None:
    """PostgreSQL refuses NUL in a query's text: a name filter, an audit target or a task id
    holding one answered 500 (found by the chaos suite's fuzzing of the API)."""
    client = login(launcher)
    for url, parameter in [
        (f"{API}/tasks/?name=a%00b", "name"),
        (f"{API}/audit/?target=a%00b", "target"),
        ("/console/?name=a%00b", None),
    ]:
        response = client.get(url)
        assert response.status_code == 400, url
        if parameter:
            assert response.json()["parameter"] == parameter
            assert "NUL" in response.json()["detail"]
    for url in (f"{API}/tasks/a%00b/", "/console/tasks/a%2500b/", f"{API}/tasks/a%2500b/cancel/"):
        assert client.get(url).status_code == 404, url
