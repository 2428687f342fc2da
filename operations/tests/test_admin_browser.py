"""The periodic-task admin form in chromium: the chosen crontab in the reader's words."""

from __future__ import annotations

import pytest
from django_celery_beat.models import CrontabSchedule

from operations.testing import chromium

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("language", "locale", "words"),
    [
        ("en", "en-US", "In words: Every 2 minutes (Asia/Shanghai)"),
        ("zh-hans", "zh-CN", "含义：每 2 分钟（Asia/Shanghai）"),
    ],
)
def test_the_crontab_chosen_is_said_in_the_readers_words(
    live_server, django_user_model, language, locale, words
) -> None:
    django_user_model.objects.create_superuser("root", "root@example.com", "pw-123456")
    crontab = CrontabSchedule.objects.create(minute="*/2", timezone="Asia/Shanghai")
    with chromium() as browser:
        page = browser.new_context(locale=locale).new_page()
        page.set_default_timeout(60_000)
        page.set_extra_http_headers({"Accept-Language": language})
        page.goto(
            f"{live_server.url}/admin/login/?next=/admin/django_celery_beat/periodictask/add/"
        )
        page.fill("#id_username", "root")
        page.fill("#id_password", "pw-123456")
        page.click("input[type=submit]")
        page.wait_for_selector("#id_crontab")
        help_text = page.inner_text(".field-crontab .help")
        # Nothing chosen yet: no "Translation: undefined" as the library's form said.
        assert "undefined" not in help_text
        assert "Translation" not in help_text
        page.select_option("#id_crontab", str(crontab.pk))
        page.wait_for_selector(".crontab-words")
        assert page.inner_text(".crontab-words") == words
        page.goto(f"{live_server.url}/admin/django_celery_beat/crontabschedule/")
        # The crontabs' list says the same words.
        said = words.split("：", 1)[1] if "：" in words else words.split(": ", 1)[1]
        assert said in page.inner_text("#result_list")
