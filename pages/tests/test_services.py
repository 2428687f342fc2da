from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from django.utils import translation
from django_celery_results.models import TaskResult
from kombu.exceptions import OperationalError

from pages import client, services, tasks
from pages.models import PageInfo
from pages.parsing import UnparsableHTML
from pages.tests.factories import make_page, make_user
from taskconsole.models import Origin, TaskRecord, TaskStatus
from taskconsole.signals import Cancellation, announce_cancelled

pytestmark = pytest.mark.django_db

FETCH, PARSE = "pages.tasks.fetch_page", "pages.tasks.parse_page"
FETCHED = {
    "url": "https://site.example/",
    "final_url": "https://site.example/home",
    "status_code": 200,
    "content_type": "text/html",
    "elapsed_ms": 42,
    "redirects": ["https://site.example/home"],
    "size_bytes": 120,
    "is_html": True,
    "html": '<title>Home</title><meta name="description" content="D"><a href="/a">a</a>',
}


def test_submit_saves_the_row_with_its_task_ids_and_dispatches_after_commit(
    django_capture_on_commit_callbacks,
) -> None:
    user = make_user()
    with mock.patch.object(services, "dispatch_chain") as dispatch:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            page = services.submit_page("https://site.example/", user)
            assert not dispatch.called  # not before the commit
        assert len(callbacks) == 1
        dispatch.assert_called_once_with(page)
    assert page.status == PageInfo.Status.PENDING
    assert page.created_by == user
    assert len(set(page.task_ids)) == 3


def test_the_chain_is_fetch_then_parse_then_store_with_the_rows_ids() -> None:
    page = make_page()
    workflow = services.page_chain(page)
    fetch, parse, store = workflow.tasks
    assert (fetch.task, fetch.args) == ("pages.tasks.fetch_page", (page.pk,))
    assert (parse.task, parse.args) == ("pages.tasks.parse_page", ())
    assert (store.task, store.args) == ("pages.tasks.store_page_info", (page.pk,))
    assert [t.options["task_id"] for t in workflow.tasks] == page.task_ids
    [errback] = workflow.options["link_error"]
    assert errback["task"] == "pages.tasks.record_page_failure"
    assert errback["kwargs"] == {"page_id": page.pk}


def test_a_broker_that_refuses_the_chain_is_recorded_on_the_row() -> None:
    page = make_page()
    with (
        mock.patch("celery.canvas._chain.apply_async", side_effect=OperationalError("down")),
        pytest.raises(OperationalError),
    ):
        services.dispatch_chain(page)
    page.refresh_from_db()
    assert page.status == PageInfo.Status.FAILED
    assert page.error == (
        "The fetch could not be queued: the task queue is unavailable. Fetch it again later."
    )
    assert page.chain_sent is False
    assert page.finished_at is not None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("language", "error"),
    [
        (
            "en",
            "The fetch could not be queued: the task queue is unavailable. Fetch it again later.",
        ),
        ("zh-hans", "抓取任务未能加入队列：消息代理不可用。请稍后重新抓取。"),
    ],
)
def test_a_chain_a_real_broker_refuses_says_why_without_the_brokers_words(
    refusing_broker, language: str, error: str
) -> None:
    page = make_page(language=language)
    with refusing_broker(), pytest.raises(OperationalError, match="Connection refused"):
        services.dispatch_chain(page)
    page.refresh_from_db()
    assert (page.status, page.chain_sent) == (PageInfo.Status.FAILED, False)
    # The submitter's language alone: the driver's English and the address stay in the log.
    assert page.error == error
    assert not TaskResult.objects.exists()


@pytest.mark.parametrize(
    ("exc", "english", "chinese"),
    [
        (
            OperationalError("Error 111 connecting to 127.0.0.1:6390. Connection refused."),
            "The fetch could not be queued: the task queue is unavailable. Fetch it again later.",
            "抓取任务未能加入队列：消息代理不可用。请稍后重新抓取。",
        ),
        (
            TypeError("Object of type PageInfo is not JSON serializable"),
            "The fetch could not be queued. Fetch it again later.",
            "抓取任务未能加入队列。请稍后重新抓取。",
        ),
    ],
    ids=["broker", "other"],
)
def test_the_not_queued_error_reads_in_both_languages(exc, english: str, chinese: str) -> None:
    with translation.override("en"):
        assert services.not_queued_error(exc) == english
    with translation.override("zh-hans"):
        assert services.not_queued_error(exc) == chinese


def test_parse_leaves_the_body_behind() -> None:
    info = services.parse_fetched(FETCHED)
    assert "html" not in info
    assert info["title"] == "Home"
    assert info["description"] == "D"
    assert info["links"] == ["https://site.example/a"]  # resolved against the final URL


def test_a_body_that_is_not_html_is_not_parsed() -> None:
    info = services.parse_fetched(
        {**FETCHED, "is_html": False, "html": None, "content_type": "application/pdf"}
    )
    assert (info["title"], info["description"], info["links"]) == ("", "", [])


def test_store_writes_the_outcome() -> None:
    page = make_page(status=PageInfo.Status.FETCHING, error="Attempt 1 failed: …")
    services.store_page_info(page.pk, services.parse_fetched(FETCHED))
    page.refresh_from_db()
    assert page.status == PageInfo.Status.DONE
    assert page.title == "Home"
    assert page.final_url == "https://site.example/home"
    assert page.redirects == ["https://site.example/home"]
    assert page.elapsed_ms == 42
    assert page.size_bytes == 120
    assert page.is_html is True
    assert page.error == ""
    assert page.finished_at is not None


def test_a_non_html_page_gets_a_notice() -> None:
    page = make_page(status=PageInfo.Status.DONE, is_html=False, content_type="image/png")
    assert "not an HTML page (image/png)" in services.notice(page)
    assert services.notice(make_page(status=PageInfo.Status.DONE, is_html=True)) == ""


def test_a_fetch_error_is_recorded_with_what_the_server_said() -> None:
    page = make_page(status=PageInfo.Status.FETCHING)
    exc = client.ClientError(
        "The server answered 404 Not Found", status_code=404, final_url="https://x.example/"
    )
    services.record_failure(page.pk, exc, "pages.tasks.fetch_page")
    page.refresh_from_db()
    assert page.status == PageInfo.Status.FAILED
    assert page.status_code == 404
    assert page.final_url == "https://x.example/"
    assert page.error == "The server answered 404 Not Found"


def test_an_unexpected_error_names_the_step() -> None:
    page = make_page()
    services.record_failure(page.pk, KeyError("title"), "pages.tasks.parse_page")
    page.refresh_from_db()
    assert page.error == "parse_page failed unexpectedly: KeyError: 'title'"


def test_the_errback_records_the_failure_from_celerys_arguments() -> None:
    page = make_page()
    request = mock.Mock(task="pages.tasks.fetch_page")
    tasks.record_page_failure(request, client.BodyTooLarge("too big"), "traceback", page_id=page.pk)
    page.refresh_from_db()
    assert (page.status, page.error) == (PageInfo.Status.FAILED, "too big")


def test_a_retry_is_noted_while_the_row_keeps_fetching() -> None:
    page = make_page(status=PageInfo.Status.FETCHING)
    exc = client.ServerError("The server answered 500.", status_code=500)
    services.note_retry(page.pk, exc, attempt=2, countdown=0.8)
    page.refresh_from_db()
    assert page.status == PageInfo.Status.FETCHING
    assert page.error == "Attempt 2 failed: The server answered 500. Retrying in 0.8 s."


def test_chain_steps_show_parents_and_stored_states() -> None:
    page = make_page()
    TaskResult.objects.create(task_id=page.fetch_task_id, status="SUCCESS")
    TaskResult.objects.create(task_id=page.parse_task_id, status="STARTED")
    steps = services.chain_steps(page)
    assert [s["name"].rsplit(".", 1)[1] for s in steps] == [
        "fetch_page",
        "parse_page",
        "store_page_info",
    ]
    assert [s["parent_id"] for s in steps] == [None, page.fetch_task_id, page.parse_task_id]
    assert [s["state"] for s in steps] == ["SUCCESS", "STARTED", "PENDING"]
    with translation.override("zh-hans"):
        assert [str(s["state_label"]) for s in steps] == ["成功", "已开始", "已入队"]


def test_steps_of_a_chain_never_sent_say_not_queued_in_both_languages() -> None:
    page = make_page(status=PageInfo.Status.FAILED, chain_sent=False)
    steps = services.chain_steps(page)
    assert [s["state"] for s in steps] == [services.NOT_QUEUED] * 3
    with translation.override("en"):
        assert [str(s["state_label"]) for s in steps] == ["Not queued"] * 3
    with translation.override("zh-hans"):
        assert [str(s["state_label"]) for s in steps] == ["未入队"] * 3
    # A step that ran after all (the broker took it, then its answer was lost) shows its state,
    # and the steps after it never ran.
    TaskResult.objects.create(task_id=page.fetch_task_id, status="FAILURE")
    assert [s["state"] for s in services.chain_steps(page)] == [
        "FAILURE",
        services.NOT_RUN,
        services.NOT_RUN,
    ]


@pytest.mark.parametrize("stopped_at", ["FAILURE", "REVOKED"])
def test_steps_after_one_that_failed_or_was_cancelled_say_not_run(stopped_at: str) -> None:
    page = make_page(status=PageInfo.Status.FAILED)
    TaskResult.objects.create(task_id=page.fetch_task_id, status="SUCCESS")
    TaskResult.objects.create(task_id=page.parse_task_id, status=stopped_at)
    steps = services.chain_steps(page)
    assert [s["state"] for s in steps] == ["SUCCESS", stopped_at, services.NOT_RUN]
    with translation.override("en"):
        assert str(steps[2]["state_label"]) == "Not run: an earlier step did not succeed"
    with translation.override("zh-hans"):
        assert str(steps[2]["state_label"]) == "未运行：前面的步骤没有成功"
    # Celery marks the later steps failed itself when a step raises: their rows win.
    TaskResult.objects.create(task_id=page.store_task_id, status="FAILURE")
    assert services.chain_steps(page)[2]["state"] == "FAILURE"


@pytest.mark.parametrize(
    ("how", "first"),
    [
        ({}, "The parse_page step was cancelled before it ran."),
        ({"terminated": True}, "The parse_page step was stopped while it ran."),
        ({"expired": True}, "The parse_page step expired before a worker started it."),
    ],
)
def test_a_cancelled_step_fails_the_page_with_the_reason(how, first) -> None:
    page = make_page(status=PageInfo.Status.FETCHING, language="en")
    announce_cancelled(page.parse_task_id, "pages.tasks.parse_page", [{}], **how)
    page.refresh_from_db()
    assert page.status == PageInfo.Status.FAILED
    assert page.error == f"{first} The steps after it did not run."
    assert page.finished_at is not None
    # A finished page is left as it is; so is a page whose step has another id.
    done = make_page(status=PageInfo.Status.DONE)
    assert not services.record_cancelled(Cancellation(done.fetch_task_id, FETCH))
    other = make_page(status=PageInfo.Status.FETCHING)
    assert not services.record_cancelled(
        Cancellation(other.parse_task_id, "pages.tasks.fetch_page")
    )
    assert not services.record_cancelled(Cancellation(other.fetch_task_id, "app.tasks.add"))
    other.refresh_from_db()
    assert other.status == PageInfo.Status.FETCHING


def test_a_step_that_started_before_the_consoles_word_runs_on() -> None:
    fetching = make_page(status=PageInfo.Status.FETCHING)
    assert not services.record_cancelled(
        Cancellation(fetching.fetch_task_id, "pages.tasks.fetch_page")
    )
    parsing = make_page(status=PageInfo.Status.FETCHING)
    TaskResult.objects.create(task_id=parsing.parse_task_id, status="STARTED")
    assert not services.record_cancelled(
        Cancellation(parsing.parse_task_id, "pages.tasks.parse_page")
    )
    assert PageInfo.objects.filter(status=PageInfo.Status.FETCHING).count() == 2
    # Stopped while it ran, it is failed all the same.
    assert services.record_cancelled(
        Cancellation(parsing.parse_task_id, "pages.tasks.parse_page", terminated=True)
    )


def test_a_step_cancelled_in_the_console_reads_revoked_before_a_worker_says_so() -> None:
    page = make_page(status=PageInfo.Status.FAILED)
    TaskResult.objects.create(task_id=page.fetch_task_id, status="SUCCESS")
    TaskRecord.objects.create(
        task_id=page.parse_task_id,
        name="pages.tasks.parse_page",
        origin=Origin.TASK,
        status=TaskStatus.REVOKED,
    )
    assert [s["state"] for s in services.chain_steps(page)] == [
        "SUCCESS",
        "REVOKED",
        services.NOT_RUN,
    ]


def test_a_cancelled_step_is_written_in_the_submitters_language() -> None:
    page = make_page(status=PageInfo.Status.PENDING, language="zh-hans")
    announce_cancelled(page.fetch_task_id, "pages.tasks.fetch_page")
    page.refresh_from_db()
    assert page.error == "fetch_page 步骤在运行前被取消了。之后的步骤没有运行。"


def test_chain_result_follows_parents_to_the_fetch() -> None:
    page = make_page()
    result = page.chain_result()
    assert result.id == page.store_task_id
    assert result.parent.id == page.parse_task_id
    assert result.parent.parent.id == page.fetch_task_id
    assert result.parent.parent.parent is None


def test_people_see_their_own_pages_unless_they_may_view_all() -> None:
    alice, bob = make_user(), make_user("pages.view_pageinfo")
    mine = make_page(created_by=alice)
    theirs = make_page(created_by=bob)
    assert list(services.visible_pages(alice)) == [mine]
    assert set(services.visible_pages(bob)) == {mine, theirs}


def test_retry_countdowns_double_from_the_base(settings) -> None:
    settings.PAGES_RETRY_BACKOFF = 0.5
    assert [tasks.retry_countdown(n) for n in range(3)] == [0.5, 1.0, 2.0]
    settings.PAGES_RETRY_BACKOFF = 3
    assert [tasks.retry_countdown(n) for n in range(3)] == [3, 6, 12]
    assert tasks.retry_countdown(20) == tasks.RETRY_BACKOFF_MAX


def test_html_the_parser_gives_up_on_is_recorded_as_such() -> None:
    page = make_page()
    with pytest.raises(UnparsableHTML) as caught:
        services.parse_fetched({**FETCHED, "html": "<![bogus[x]]>"})
    services.record_failure(page.pk, caught.value, "pages.tasks.parse_page")
    page.refresh_from_db()
    assert page.error.startswith("The HTML could not be parsed: unknown status keyword")


def test_nothing_in_the_app_turns_off_celerys_guard_against_waiting() -> None:
    # Celery refuses result.get() inside a task unless told otherwise; nothing here tells it.
    app_dir = Path(services.__file__).parent
    sources = [p.read_text() for p in app_dir.glob("*.py")]
    assert len(sources) >= 5
    for source in sources:
        assert "disable_sync_subtasks" not in source
        assert "allow_join_result" not in source
