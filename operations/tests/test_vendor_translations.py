"""django-celery-results and django-celery-beat read in Simplified Chinese in the admin.

Their labels come from locale_vendor/, a hand-kept catalog listed in LOCALE_PATHS after the
project's own locale/ (see its header), plus operations/admin.py for the few labels beat never
passes through gettext.
"""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.test import Client
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
)
from django_celery_results.admin import TaskResultAdmin
from django_celery_results.models import ChordCounter, GroupResult, TaskResult

from operations.tests.test_translations import messages, parse_po

ROOT = Path(settings.BASE_DIR)
VENDOR_PO = ROOT / "locale_vendor/zh_Hans/LC_MESSAGES/django.po"
CHINESE = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture
def superuser_client(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "x"))
    return client


def zh(client: Client, url: str) -> str:
    response = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 200, url
    return response.content.decode()


# The catalog ------------------------------------------------------------------------------


def test_vendor_catalog_comes_after_the_projects_own_in_locale_paths() -> None:
    """makemessages writes to the first entry; the project's catalog wins on a shared msgid."""
    paths = [Path(p) for p in settings.LOCALE_PATHS]
    assert paths[0] == ROOT / "locale"
    assert ROOT / "locale_vendor" in paths[1:]


def test_vendor_catalog_is_complete_and_compiled() -> None:
    header = parse_po(VENDOR_PO)[0]
    assert "Language: zh_Hans\n" in header.msgstr[0]
    assert "Plural-Forms: nplurals=1; plural=0;\n" in header.msgstr[0]
    assert "makemessages does not maintain this file" in VENDOR_PO.read_text(encoding="utf-8")

    entries = messages(VENDOR_PO)
    assert [e.msgid for e in entries if "fuzzy" in e.flags or not all(e.msgstr.values())] == []
    with VENDOR_PO.with_suffix(".mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = [
        e.msgid
        for e in entries
        if (
            compiled.ngettext(e.msgid, e.msgid_plural, 1)
            if e.msgid_plural
            else compiled.gettext(e.msgid)
        )
        != e.msgstr[0]
    ]
    assert stale == [], "run: python manage.py compilemessages --ignore=.venv"


# Messages ---------------------------------------------------------------------------------


def test_results_and_beat_messages_translate() -> None:
    with translation.override("zh-hans"):
        assert _("Task results") == "任务结果"  # the project's own catalog
        assert _("task results") == "任务结果"
        assert _("Celery Results") == "Celery 结果"
        assert str(TaskResult._meta.verbose_name_plural) == "任务结果"
        assert str(GroupResult._meta.verbose_name_plural) == "分组结果"
        assert str(TaskResult._meta.get_field("status").verbose_name) == "任务状态"
        done = TaskResult._meta.get_field("date_done")
        assert str(done.help_text) == "任务的完成时间（按你的时区显示）"
        assert _("Microseconds") == "微秒"
        assert _("Microsecond") == "微秒"
        assert dict(IntervalSchedule.PERIOD_CHOICES)["microseconds"] == "微秒"
        assert _("Execution Options") == "执行选项"
        assert _("Periodic Tasks Using This Schedule") == "使用此调度的周期性任务"
        assert str(PeriodicTask._meta.get_field("task").verbose_name) == "任务名称"
        assert str(IntervalSchedule(every=1, period=IntervalSchedule.HOURS)) == "每小时"
        assert str(IntervalSchedule(every=30, period=IntervalSchedule.SECONDS)) == "每 30 秒"
        assert str(CrontabSchedule._meta.verbose_name) == "Crontab 调度"
        assert str(ClockedSchedule._meta.verbose_name) == "单次定时调度"
        assert str(ChordCounter._meta.verbose_name_plural) == "chord 计数器"
        assert ngettext(
            "{0} task was successfully enabled", "{0} tasks were successfully enabled", 3
        ).format(3) == ("已成功启用 3 个任务")
        # "Run selected tasks": the library adds English plural suffixes, which zh leaves out.
        assert _("{0} task{1} {2} successfully run").format(2, "s", "were") == "已成功启动 2 个任务"
        assert _("Error:") == "错误："
    with translation.override("en"):
        assert str(TaskResult._meta.verbose_name_plural) == "task results"
        assert _("Microseconds") == "Microseconds"
        assert str(PeriodicTask._meta.get_field("task").verbose_name) == "Task Name"


def test_every_label_and_help_text_of_django_celery_results_is_chinese() -> None:
    texts = [apps.get_app_config("django_celery_results").verbose_name]
    texts += [title for title, _options in TaskResultAdmin.fieldsets if title]
    # The admin shows these two; ChordCounter is internal (not registered), only its help texts
    # are marked for translation.
    texts += [ChordCounter._meta.get_field(name).help_text for name in ("sub_tasks", "count")]
    for model in (TaskResult, GroupResult):
        texts += [model._meta.verbose_name, model._meta.verbose_name_plural]
        for field in model._meta.concrete_fields:
            if not field.primary_key:
                texts += [field.verbose_name, field.help_text]
    with translation.override("zh-hans"):
        english = sorted({str(t) for t in texts if t and not CHINESE.search(str(t))})
    # The project keeps "worker" as a term (the task console's catalog does the same).
    assert english == ["worker"]


# Admin pages ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_task_result_admin_is_in_chinese(superuser_client: Client) -> None:
    row = TaskResult.objects.create(
        task_id="5f0e9a52-6a1b-4f7e-9d43-2b7d7d0e1c11",
        task_name="app.tasks.add",
        task_args='"(3, 5)"',
        status="SUCCESS",
        result="8",
        worker="celery@example",
    )

    listing = zh(superuser_client, "/admin/django_celery_results/taskresult/")
    detail = zh(superuser_client, f"/admin/django_celery_results/taskresult/{row.pk}/change/")

    for text in ("Celery 结果", "任务结果", "分组结果", "任务 ID", "任务名称", "任务状态"):
        assert text in listing, text
    for text in ("Celery Results", "Task results", "Group results", "Task Name", "Task State"):
        assert text not in listing, text
    # The dates are shown in the reader's time zone: the library's help text said "in UTC".
    for text in (
        "参数",
        "任务位置参数",
        "结果数据",
        "完成时间",
        "任务的完成时间（按你的时区显示）",
    ):
        assert text in detail, text
    for text in ("Parameters", "Task Positional Arguments", "Completed DateTime", "UTC"):
        assert text not in detail, text
    english = superuser_client.get(
        f"/admin/django_celery_results/taskresult/{row.pk}/change/", HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert "When the task was completed (shown in your time zone)" in english
    assert "in UTC" not in english


@pytest.mark.django_db
def test_group_result_admin_is_in_chinese_with_the_language_cookie(
    superuser_client: Client,
) -> None:
    GroupResult.objects.create(group_id="g-1", result="[]")
    superuser_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"

    html = superuser_client.get("/admin/django_celery_results/groupresult/").content.decode()

    assert "分组 ID" in html
    assert "Group ID" not in html
    assert "Group results" not in html


@pytest.mark.django_db
def test_interval_period_select_says_microseconds(superuser_client: Client) -> None:
    chinese = zh(superuser_client, "/admin/django_celery_beat/intervalschedule/add/")
    english = superuser_client.get(
        "/admin/django_celery_beat/intervalschedule/add/", HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()

    assert '<option value="microseconds">微秒</option>' in chinese
    assert "毫秒" not in chinese
    assert "Microseconds" not in chinese
    assert "周期数" in chinese
    assert '<option value="microseconds">Microseconds</option>' in english


@pytest.mark.django_db
def test_the_admin_index_and_filters_have_no_english_left(superuser_client: Client) -> None:
    index = zh(superuser_client, "/admin/")
    for text in ("Model name", "Add link", "Change or view list link"):
        assert text not in index, text
    assert "模型名称" in index
    listing = zh(superuser_client, "/admin/django_celery_results/taskresult/")
    assert "按任务状态" in listing
    assert " 以 " not in listing


def test_periodic_task_admin_labels_are_in_chinese(superuser_client: Client) -> None:
    interval = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.create(name="add-every-5", task="app.tasks.add", interval=interval)

    listing = zh(superuser_client, "/admin/django_celery_beat/periodictask/")
    add = zh(superuser_client, "/admin/django_celery_beat/periodictask/add/")
    schedule = zh(
        superuser_client, f"/admin/django_celery_beat/intervalschedule/{interval.pk}/change/"
    )

    assert "调度" in listing
    assert "任务名称" in listing  # the list filter's title
    for text in ("Scheduler", "Task Name", "Periodic Tasks"):
        assert text not in listing, text
    assert "执行选项" in add
    assert "Execution Options" not in add
    assert "Crontab translation" not in add
    assert "使用此调度的周期性任务" in schedule
    assert "Periodic Tasks Using This Schedule" not in schedule
    assert "Task Name" not in schedule


@pytest.mark.django_db
def test_crontab_admin_labels_are_in_chinese(superuser_client: Client) -> None:
    crontab = CrontabSchedule.objects.create(minute="30", hour="7", timezone="Asia/Shanghai")

    listing = zh(superuser_client, "/admin/django_celery_beat/crontabschedule/")
    change = zh(superuser_client, f"/admin/django_celery_beat/crontabschedule/{crontab.pk}/change/")

    assert "可读描述" in listing
    assert "Human readable" not in listing
    assert '（例如："1,12"）' in change  # help texts are not escaped
    assert "Cron Months" not in change
    assert "Cron Days Of The Week" not in change
