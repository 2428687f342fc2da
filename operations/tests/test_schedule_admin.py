"""The admin refuses periodic tasks, crontabs and intervals beat could never run, with our own
field errors in English and Simplified Chinese (operations/admin.py, schedule_checks.py).

The zh-hans assertions need the msgids of operations/schedule_checks.py and admin.py in the
project's catalog (locale/zh_Hans).
"""

from __future__ import annotations

import html
import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from operations import schedule_checks

pytestmark = [pytest.mark.django_db]

CRONTAB_ADD = "/admin/django_celery_beat/crontabschedule/add/"
INTERVAL_ADD = "/admin/django_celery_beat/intervalschedule/add/"
TASK_ADD = "/admin/django_celery_beat/periodictask/add/"

#: Celery's and python-crontab's own words, which must never reach the page.
ENGLISH_FROM_LIBRARIES = (
    "not in 0-59",
    "Sequence can not be divided",
    "Bad range",
    "No enumeration",
    "Unrecognised Day of Week",
    "negative numbers not supported",
    "empty part",
    "Invalid weekday literal",
    "Traceback",
)


@pytest.fixture
def admin_client(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "x"))
    return client


#: The schedule admins show the periodic tasks using the schedule, as an inline formset.
INLINE = {"periodictask_set-TOTAL_FORMS": "0", "periodictask_set-INITIAL_FORMS": "0"}


def post(client: Client, url: str, data: dict, language: str = "en"):
    if "schedule/" in url:
        data = {**INLINE, **data}
    return client.post(url, data, HTTP_ACCEPT_LANGUAGE=language)


def errors(response) -> list[str]:
    """The text of every error list on the page (field and form errors)."""
    page = response.content.decode()
    found = re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', page, re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", item)).strip() for item in found]


def crontab(**fields) -> dict:
    data = {
        "minute": "0",
        "hour": "4",
        "day_of_month": "*",
        "month_of_year": "*",
        "day_of_week": "*",
        "timezone": "Asia/Shanghai",
    }
    data.update(fields)
    return data


# Crontabs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("hour", "-1", "Hour(s): “-1” has a negative number. Use a number from 0 to 23."),
        (
            "minute",
            "0,,5",
            "Minute(s): “0,,5” has an empty item: write one value between each pair of commas, "
            "such as 1,15.",
        ),
        ("minute", "61", "Minute(s): 61 is out of range. Use a number from 0 to 59."),
        (
            "minute",
            "*/0",
            "Minute(s): the step in “*/0” must be a whole number of at least 1, such as */15.",
        ),
        (
            "minute",
            "abc",
            "Minute(s): “abc” is neither a number nor a name this field takes. "
            "Use a number from 0 to 59.",
        ),
        (
            "day_of_week",
            "xyz",
            "Day(s) Of The Week: “xyz” is neither a number nor a name this field takes. Use a "
            "number from 0 to 6 (0 is Sunday) or a day's English abbreviation (sun to sat).",
        ),
        (
            "day_of_week",
            "7",
            "Day(s) Of The Week: 7 is out of range. Use a number from 0 to 6 (0 is Sunday) or a "
            "day's English abbreviation (sun to sat).",
        ),
        (
            "month_of_year",
            "13",
            "Month(s) Of The Year: 13 is out of range. Use a number from 1 to 12 or a month's "
            "English abbreviation (jan to dec).",
        ),
        ("day_of_month", "0", "Day(s) Of The Month: 0 is out of range. Use a number from 1 to 31."),
    ],
)
def test_a_crontab_field_celery_refuses_is_a_field_error_not_a_500(
    admin_client, field, value, expected
) -> None:
    response = post(admin_client, CRONTAB_ADD, crontab(**{field: value}))
    assert response.status_code == 200
    assert errors(response) == [expected]
    page = response.content.decode()
    for text in ENGLISH_FROM_LIBRARIES:
        assert text not in page, text
    assert not CrontabSchedule.objects.exists()


def test_crontab_errors_are_in_chinese(admin_client) -> None:
    response = post(
        admin_client,
        CRONTAB_ADD,
        crontab(minute="61", hour="-1", day_of_week="xyz", month_of_year="1,,5"),
        "zh-hans",
    )
    assert response.status_code == 200
    assert errors(response) == [
        "分钟：61 超出范围。请使用 0 到 59 之间的数字。",
        "小时：“-1”含有负数。请使用 0 到 23 之间的数字。",
        "一年的第几个月：“1,,5”中有空项：每两个逗号之间都要写一个值，例如 1,15。",
        "一个星期的第几天：“xyz”既不是数字，也不是此字段接受的名称。"
        "请使用 0 到 6 之间的数字（0 为星期日）或星期的英文缩写（sun 到 sat）。",
    ]
    page = response.content.decode()
    for text in ENGLISH_FROM_LIBRARIES:
        assert text not in page, text


def test_every_crontab_message_is_translated() -> None:
    """Each message and range of schedule_checks has a Chinese translation (needs the merge)."""
    from django.utils import translation

    samples = {
        ("minute", "61"),
        ("minute", "-1"),
        ("minute", "1,,2"),
        ("minute", "*/0"),
        ("minute", "abc"),
        ("hour", "1-x"),
        ("month_of_year", "13"),
        ("day_of_week", "7"),
        ("day_of_month", "32"),
    }
    with translation.override("zh-hans"):
        for field, value in samples:
            message = schedule_checks.crontab_field_error(field, value)
            assert message is not None, (field, value)
            assert not re.search(r"[A-Za-z]{4,}", message.replace("sun", "").replace("sat", "")), (
                message
            )
        never = schedule_checks.crontab_date_error("31", "2")
        assert never == "这个 crontab 永远不会运行：“2”中没有哪个月有第“31”天。"


@pytest.mark.parametrize(
    "fields",
    [
        # Celery reads these; python-crontab (django-celery-beat's validators) refused some.
        {"minute": "50-10"},  # wraps around the hour: 50..59 and 0..10
        {"minute": "*/90"},
        {"day_of_week": "mon-fri", "hour": "8-18/2"},
        {"month_of_year": "jan,jul", "day_of_month": "1,15"},
        {"day_of_week": "sun"},
    ],
)
def test_what_celery_accepts_is_saved(admin_client, fields) -> None:
    response = post(admin_client, CRONTAB_ADD, crontab(**fields))
    assert response.status_code == 302, errors(response)
    row = CrontabSchedule.objects.get()
    for name, value in fields.items():
        assert getattr(row, name) == value
    row.schedule  # noqa: B018  (beat builds it: this raises if Celery disagreed)


def test_a_crontab_that_never_runs_is_refused(admin_client) -> None:
    response = post(admin_client, CRONTAB_ADD, crontab(day_of_month="31", month_of_year="2"))
    assert response.status_code == 200
    assert errors(response) == ["This crontab would never run: no month in “2” has a day “31”."]
    assert not CrontabSchedule.objects.exists()
    response = post(admin_client, CRONTAB_ADD, crontab(day_of_month="30,31", month_of_year="2,4"))
    assert response.status_code == 302  # April 30 exists


def test_a_bad_crontab_row_made_elsewhere_does_not_break_the_admin_pages(admin_client) -> None:
    bad = CrontabSchedule.objects.create(minute="0,,5", hour="-1", timezone="UTC")
    task = PeriodicTask.objects.create(name="bad-cron", task="app.tasks.ping", crontab=bad)
    for url in (
        "/admin/django_celery_beat/crontabschedule/",
        f"/admin/django_celery_beat/crontabschedule/{bad.pk}/change/",
        TASK_ADD,
        f"/admin/django_celery_beat/periodictask/{task.pk}/change/",
    ):
        assert admin_client.get(url).status_code == 200, url
    # Saving the task says what is wrong with the crontab it uses.
    response = post(admin_client, TASK_ADD, task_form(name="uses-bad", crontab=bad.pk, interval=""))
    assert response.status_code == 200
    assert errors(response) == [
        "Minute(s): “0,,5” has an empty item: write one value between each pair of commas, "
        "such as 1,15."
        "Hour(s): “-1” has a negative number. Use a number from 0 to 23."
    ]


# Intervals --------------------------------------------------------------------------------


@pytest.mark.parametrize("every", ["9223372036854775807", "36501", "999999999"])
def test_an_interval_beat_cannot_add_to_a_date_is_refused(admin_client, every) -> None:
    response = post(admin_client, INTERVAL_ADD, {"every": every, "period": "days"})
    assert response.status_code == 200
    assert errors(response) == [
        "This interval is too long: beat keeps intervals of up to 100 years (36,500 days)."
    ]
    assert not IntervalSchedule.objects.exists()


def test_an_interval_error_is_in_chinese(admin_client) -> None:
    response = post(
        admin_client, INTERVAL_ADD, {"every": "9223372036854775807", "period": "days"}, "zh-hans"
    )
    assert errors(response) == ["这个间隔太长：beat 最多只能按 100 年（36,500 天）的间隔运行任务。"]


def test_a_long_but_possible_interval_is_saved(admin_client) -> None:
    response = post(admin_client, INTERVAL_ADD, {"every": "36500", "period": "days"})
    assert response.status_code == 302
    assert IntervalSchedule.objects.get().every == 36500


# Periodic tasks ---------------------------------------------------------------------------


def task_form(**fields) -> dict:
    interval, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    data = {
        "name": "five-minutes",
        "regtask": "app.tasks.ping",
        "task": "",
        "enabled": "on",
        "description": "",
        "interval": str(interval.pk),
        "crontab": "",
        "solar": "",
        "clocked": "",
        "start_time_0": "",
        "start_time_1": "",
        "args": "[]",
        "kwargs": "{}",
        "expires_0": "",
        "expires_1": "",
        "expire_seconds": "",
        "queue": "",
        "exchange": "",
        "routing_key": "",
        "priority": "",
        "headers": "{}",
    }
    data.update(fields)
    return {key: value for key, value in data.items() if value is not None}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"args": '{"x": 1}'},
            'Positional arguments must be a JSON list, such as [1, "a"]; [] for none.',
        ),
        (
            {"args": "[1,"},
            "This is not valid JSON (line 1, column 4). "
            'Positional arguments must be a JSON list, such as [1, "a"]; [] for none.',
        ),
        (
            {"kwargs": "[1]"},
            'Keyword arguments must be a JSON object, such as {"x": 1}; {} for none.',
        ),
        (
            {"headers": "[1]"},
            'Message headers must be a JSON object, such as {"x": "y"}; {} for none.',
        ),
        (
            {"regtask": "", "task": "nonexistent.task"},
            "No task named “nonexistent.task” is registered in this site's Celery app. Choose "
            "one under “Task (registered)”, or tick “Registered only in workers” if only your "
            "workers know it.",
        ),
        (
            # The select's value is not checked by django-celery-beat's form.
            {"regtask": "nonexistent.task"},
            "No task named “nonexistent.task” is registered in this site's Celery app. Choose "
            "one under “Task (registered)”, or tick “Registered only in workers” if only your "
            "workers know it.",
        ),
    ],
)
def test_a_periodic_task_that_could_never_work_is_refused(admin_client, fields, expected) -> None:
    response = post(admin_client, TASK_ADD, task_form(**fields))
    assert response.status_code == 200
    assert errors(response) == [expected]
    assert not PeriodicTask.objects.filter(name="five-minutes").exists()


def test_periodic_task_errors_are_in_chinese(admin_client) -> None:
    response = post(
        admin_client,
        TASK_ADD,
        task_form(args='{"x": 1}', kwargs="[1]", headers="[1]", regtask="", task="nope.task"),
        "zh-hans",
    )
    assert response.status_code == 200
    assert errors(response) == [
        "此站点的 Celery 应用中没有注册名为“nope.task”的任务。"
        "请在“任务 (已注册的)”中选择一个；如果只有你的 worker 知道它，请勾选“仅在 worker 中注册”。",
        '位置参数必须是 JSON 列表，例如 [1, "a"]；没有参数时填 []。',
        '关键字参数必须是 JSON 对象，例如 {"x": 1}；没有参数时填 {}。',
        '消息头必须是 JSON 对象，例如 {"x": "y"}；没有消息头时填 {}。',
    ]


def test_a_task_only_workers_know_is_saved_when_the_box_is_ticked(admin_client) -> None:
    response = post(admin_client, TASK_ADD, task_form(regtask="", task="billing.tasks.close_month"))
    assert response.status_code == 200
    response = post(
        admin_client,
        TASK_ADD,
        task_form(regtask="", task="billing.tasks.close_month", worker_only="on"),
    )
    assert response.status_code == 302
    assert PeriodicTask.objects.get(name="five-minutes").task == "billing.tasks.close_month"


def test_a_good_periodic_task_is_saved_and_registered_tasks_include_celerys_own(
    admin_client,
) -> None:
    response = post(
        admin_client,
        TASK_ADD,
        task_form(args="[3, 8]", kwargs="", headers='{"tenant": "a"}', regtask="app.tasks.add"),
    )
    assert response.status_code == 302, errors(response)
    row = PeriodicTask.objects.get(name="five-minutes")
    assert (row.task, row.args) == ("app.tasks.add", "[3, 8]")
    # Beat installs celery.backend_cleanup itself: editing it must not be refused.
    assert "celery.backend_cleanup" in schedule_checks.registered_tasks()


def test_an_unknown_queue_is_saved_with_a_warning(admin_client) -> None:
    response = post(admin_client, TASK_ADD, task_form(queue="reports"))
    assert response.status_code == 302
    warnings = [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
    assert warnings == [
        "Saved, but the queue “reports” is not one this site declares (default, heavy_tasks): "
        "the task waits there until a worker consumes that queue. Check the name unless your "
        "workers consume it."
    ]
    assert PeriodicTask.objects.get(name="five-minutes").queue == "reports"


def test_a_known_queue_gives_no_warning(admin_client) -> None:
    response = post(admin_client, TASK_ADD, task_form(queue="heavy_tasks"), "en")
    assert response.status_code == 302
    assert not [m for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]


def test_the_unknown_queue_warning_is_in_chinese(admin_client) -> None:
    response = post(admin_client, TASK_ADD, task_form(queue="reports"), "zh-hans")
    assert response.status_code == 302
    warnings = [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
    assert warnings == [
        "已保存，但队列“reports”不在此站点声明的队列中（default、heavy_tasks）："
        "任务会在那里等待，直到有 worker 消费该队列。除非你的 worker 消费它，否则请检查队列名称。"
    ]


def test_the_worker_only_box_reads_in_chinese(admin_client) -> None:
    page = admin_client.get(TASK_ADD, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "仅在 worker 中注册" in page
    assert "Registered only in workers" not in page
