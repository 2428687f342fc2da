"""The upload page in chromium: more files than the server takes are stopped in the browser,
before the whole form is refused (and what was chosen lost) by Django's limit."""

from __future__ import annotations

import pytest

from operations.testing import chromium

from .factories import user_with

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("locale", "message"),
    [("en-US", "Choose at most 100 files at a time."), ("zh-CN", "一次最多选择 100 个文件。")],
)
def test_too_many_files_are_stopped_before_the_upload(live_server, settings, locale, message):
    user_with("add_importbatch")
    with chromium() as browser:
        context = browser.new_context(locale=locale)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{live_server.url}/imports/")
        page.wait_for_url("**/accounts/login/?next=/imports/")
        page.fill("#id_username", "uploader")
        page.fill("#id_password", "x")
        page.click("#login-button")
        page.wait_for_url(f"{live_server.url}/imports/")

        files = [
            {"name": f"p{i}.csv", "mimeType": "text/csv", "buffer": b"sku\n"}
            for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)
        ]
        page.set_input_files("#id_files", files)
        assert page.eval_on_selector("#id_files", "el => el.validationMessage") == message
        page.click("form[enctype='multipart/form-data'] button[type=submit]")
        # The browser kept the form: nothing was sent, the page and its choice are still there.
        assert page.url == f"{live_server.url}/imports/"
        assert page.eval_on_selector("#id_files", "el => el.files.length") == len(files)

        page.set_input_files("#id_files", files[:2])
        assert page.eval_on_selector("#id_files", "el => el.validationMessage") == ""
        context.close()
