"""The maintenance page in chromium: its tables stay readable in Chinese."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone, translation

from maintenance import services
from maintenance.models import Job, MaintenanceRun, RunStatus
from operations.testing import chromium

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

#: The line boxes of each cell's text (a line per distinct top), per table and cell class.
LINES = """
(selector) => [...document.querySelectorAll(selector)].map((cell) => {
  const range = document.createRange();
  range.selectNodeContents(cell);
  const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
  return [cell.innerText.trim(), tops.size];
})
"""


def test_short_cells_keep_their_words_whole_in_chinese(live_server, django_user_model) -> None:
    django_user_model.objects.create_superuser("root", "root@example.com", "pw-123456")
    call_command("sync_schedules", verbosity=0)  # the schedules table's rows
    with translation.override("en"):  # a worker writing in English
        services.run_job(Job.PRUNE_RESULTS)
    now = timezone.now()
    MaintenanceRun.objects.create(job=Job.CLEAR_EXPIRED, status=RunStatus.RUNNING)
    MaintenanceRun.objects.create(
        job=Job.BACKUP_DATABASE,
        status=RunStatus.SUCCEEDED,
        started_at=now,
        finished_at=now + timedelta(seconds=2),
        backup_path="/srv/backups/" + "db-20261205-020000-with-a-long-name.sqlite3",
        backup_size=123_456,
        summary="A summary long enough to need more than one line in its column, " * 3,
    )
    with chromium() as browser:
        page = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
        page = page.new_page()
        page.goto(f"{live_server.url}/accounts/login/?next=/maintenance/")
        page.fill("#id_username", "root")
        page.fill("#id_password", "pw-123456")
        page.click("#login-button")
        page.wait_for_url(re.compile(r"/maintenance/$"))
        assert page.inner_text("h1") == "维护"
        headers = page.evaluate(LINES, "table.runs th")
        short = page.evaluate(LINES, "table.runs td.short")
        # Before, "已启用" and "运行中" broke between every two characters.
        assert {"已启用", "上次运行", "状态", "删除行数", "运行中", "成功"} <= {
            t for t, _ in headers + short
        }
        assert "是" in {t for t, _ in short}  # the schedules' "enabled" cells are there
        assert [(text, n) for text, n in headers + short if n != 1] == []
        # The summary the worker wrote in English, shown in the reader's language.
        summaries = page.locator("table.runs td.summary").all_inner_texts()
        assert any(text.startswith("已分批") for text in summaries), summaries
        assert not any(text.startswith("Deleted") for text in summaries), summaries
        # The queued and finished times break between the date and the time, if anywhere.
        whens = page.evaluate(LINES, "table.runs .when")
        assert whens
        assert [(text, n) for text, n in whens if n != 1] == []
        # The runs table stays within the page's column.
        overflow = page.evaluate(
            "() => [...document.querySelectorAll('table.runs')].map((t) =>"
            " t.getBoundingClientRect().right - t.parentElement.getBoundingClientRect().right)"
        )
        assert max(overflow) <= 1
