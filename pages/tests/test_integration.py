"""Real workers, a real broker and a local HTTP server: every path of the chain.

The module starts its own worker on `default` (never `celery_worker`), allowed to reach the
local server, with a 1 s read timeout, a 64 KiB body limit and 0.2 s retry backoff.
"""

from __future__ import annotations

import json

import httpx
import pytest
from celery.result import AsyncResult
from django.test import Client
from django.urls import reverse
from django.utils import translation
from django_celery_results.models import TaskResult

from operations.testing import ManagedProcess, wait_for
from pages import services
from pages.models import PageInfo
from pages.tests.antipattern import update_page_info_blocking
from pages.tests.factories import make_page, make_user
from pages.tests.server import PageServer
from taskconsole.models import Origin, TaskRecord, TaskStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MAX_BYTES = 64 * 1024
WAIT = 60


@pytest.fixture(scope="module")
def pages_worker(start_module_worker, page_server: PageServer) -> ManagedProcess:
    return start_module_worker(
        queues="default",
        name="pages",
        extra_env={
            "PAGES_ALLOW_PRIVATE_ADDRESSES": "true",
            "PAGES_CONNECT_TIMEOUT": "5",
            "PAGES_READ_TIMEOUT": "1",
            "PAGES_MAX_BYTES": str(MAX_BYTES),
            "PAGES_MAX_REDIRECTS": "5",
            "PAGES_RETRY_BACKOFF": "0.2",
        },
        extra_args=("--include", "pages.tests.antipattern"),
    )


def finished(page: PageInfo) -> PageInfo:
    """Wait for the row to be done or failed, and return it fresh."""

    def check() -> PageInfo | None:
        page.refresh_from_db()
        return page if page.is_finished else None

    return wait_for(check, timeout=WAIT)


def submit(url: str) -> PageInfo:
    return services.submit_page(url, make_user())


def states(page: PageInfo) -> list[str]:
    rows = dict(
        TaskResult.objects.filter(task_id__in=page.task_ids).values_list("task_id", "status")
    )
    return [rows.get(task_id, "PENDING") for task_id in page.task_ids]


def test_a_page_submitted_on_the_page_runs_the_chain(
    client: Client, settings, pages_worker, page_server: PageServer
) -> None:
    # The form judges literal addresses with the web process's setting.
    settings.PAGES_ALLOW_PRIVATE_ADDRESSES = True
    client.force_login(make_user("pages.add_pageinfo"))
    url = page_server.url("normal")

    response = client.post(reverse("pages:submit"), {"url": url})

    page = finished(PageInfo.objects.get(url=url))
    assert response["Location"] == reverse("pages:detail", args=[page.pk])
    assert page.status == PageInfo.Status.DONE
    assert page.title == "A normal page"
    assert page.description == "What a normal page is about."
    assert page.links == [f"{page_server.base_url}/normal/other", "https://example.org/x"]
    assert page.status_code == 200
    assert page.final_url == url
    assert page.content_type == "text/html"
    assert page.is_html is True
    assert page.elapsed_ms is not None
    assert page.attempts == 1
    assert page.error == ""

    # The chain: three results, each the parent of the next, all stored as SUCCESS.
    wait_for(lambda: states(page) == ["SUCCESS"] * 3, timeout=WAIT)
    last = page.chain_result()
    assert last.parent.parent.id == page.fetch_task_id
    assert last.result == page.pk
    assert last.parent.result["title"] == "A normal page"
    assert "html" not in last.parent.result
    assert last.parent.parent.result["status_code"] == 200
    fetch, parse, store = (TaskResult.objects.get(task_id=i) for i in page.task_ids)
    # Each step starts after the one before it started. (Celery publishes the next step just
    # before it stores a step's own result, so date_done may trail the next date_started.)
    assert fetch.date_started <= parse.date_started <= store.date_started
    assert fetch.task_name == "pages.tasks.fetch_page"
    assert fetch.worker.startswith("pages-")

    data = client.get(reverse("pages:status", args=[page.pk])).json()
    assert [step["state"] for step in data["chain"]] == ["SUCCESS"] * 3
    assert "A normal page" in client.get(response["Location"]).content.decode()


def test_redirects_are_followed_and_recorded(pages_worker, page_server: PageServer) -> None:
    base = f"{page_server.base_url}/hops/{page_server.url('x').rsplit('/', 1)[1]}"
    page = finished(submit(f"{base}/2"))
    assert page.status == PageInfo.Status.DONE
    assert page.redirects == [f"{base}/1", f"{base}/0"]
    assert page.final_url == f"{base}/0"
    assert page.links[0] == f"{page_server.base_url}/normal/other"


def test_a_slow_page_times_out_then_the_retry_succeeds(
    pages_worker, page_server: PageServer
) -> None:
    url = page_server.url("slow")
    page = finished(submit(url))
    assert page.status == PageInfo.Status.DONE
    assert page.attempts == 2
    assert page.title == "A normal page"
    assert page.error == ""
    assert page_server.hits(url) == 2
    # The row is saved by the last step, a moment before that step's own result is stored.
    wait_for(lambda: states(page) == ["SUCCESS"] * 3, timeout=WAIT)


def test_a_500_is_retried_then_the_failure_is_recorded(
    pages_worker, page_server: PageServer
) -> None:
    url = page_server.url("error")
    page = finished(submit(url))
    assert page.status == PageInfo.Status.FAILED
    assert page.attempts == 4  # the first try and three retries
    assert page_server.hits(url) == 4
    assert page.status_code == 500
    assert "500 Internal Server Error" in page.error
    # The failure reaches every step of the chain: parse and store never ran.
    wait_for(lambda: states(page) == ["FAILURE"] * 3, timeout=WAIT)
    assert "ServerError" in TaskResult.objects.get(task_id=page.fetch_task_id).result


def test_a_404_is_not_retried(pages_worker, page_server: PageServer) -> None:
    url = page_server.url("missing")
    page = finished(submit(url))
    assert page.status == PageInfo.Status.FAILED
    assert page.status_code == 404
    assert "404 Not Found" in page.error
    assert "not retried" in page.error
    assert page.attempts == 1
    assert page_server.hits(url) == 1


def test_errors_are_written_in_the_submitters_language(
    client: Client, settings, pages_worker, page_server: PageServer
) -> None:
    # The worker's own language is the site's (English): each step writes in the submitter's.
    settings.PAGES_ALLOW_PRIVATE_ADDRESSES = True
    client.force_login(make_user("pages.add_pageinfo"))
    url = page_server.url("missing")
    client.post(reverse("pages:submit"), {"url": url}, HTTP_ACCEPT_LANGUAGE="zh-hans")
    page = finished(PageInfo.objects.get(url=url))
    assert page.language == "zh-hans"
    assert page.error == f"服务器对 {url} 返回了 404 Not Found；不会重试。"

    # parse_page has only the fetch's message, which carries the language.
    with translation.override("zh-hans"):
        unparsable = finished(submit(page_server.url("unparsable")))
    assert unparsable.error.startswith("无法解析 HTML：")

    # Submitted in English, written in English.
    with translation.override("en"):
        english = finished(submit(page_server.url("missing")))
    assert english.error.endswith("; this is not retried.")


def test_a_redirect_loop_fails_with_its_reason(pages_worker, page_server: PageServer) -> None:
    url = page_server.url("loop")
    page = finished(submit(url))
    assert page.status == PageInfo.Status.FAILED
    assert page.error.startswith("Redirect loop:")
    assert page.status_code == 302
    assert page.attempts == 1


def test_a_body_that_is_not_html_is_stored_but_not_parsed(
    client: Client, pages_worker, page_server: PageServer
) -> None:
    user = make_user()
    client.force_login(user)
    page = finished(services.submit_page(page_server.url("json"), user))
    assert page.status == PageInfo.Status.DONE
    assert page.is_html is False
    assert page.content_type == "application/json"
    assert (page.title, page.description, page.links) == ("", "", [])
    html = client.get(reverse("pages:detail", args=[page.pk])).content.decode()
    assert "This is not an HTML page (application/json)" in html


def test_a_body_over_the_limit_fails_without_retry(pages_worker, page_server: PageServer) -> None:
    url = page_server.url("big")
    page = finished(submit(url))
    assert page.status == PageInfo.Status.FAILED
    assert f"larger than the limit of {MAX_BYTES} bytes" in page.error
    assert page.attempts == 1
    assert page_server.hits(url) == 1


def test_a_page_the_parser_gives_up_on_fails_in_parse_page(
    pages_worker, page_server: PageServer
) -> None:
    page = finished(submit(page_server.url("unparsable")))
    assert page.status == PageInfo.Status.FAILED
    assert page.error.startswith("The HTML could not be parsed")
    assert page.attempts == 1
    # The fetch succeeded; the parse failed and took the store down with it.
    wait_for(lambda: states(page) == ["SUCCESS", "FAILURE", "FAILURE"], timeout=WAIT)


def test_a_step_revoked_in_the_worker_fails_the_page_and_the_rest_never_runs(
    pages_worker, page_server: PageServer
) -> None:
    from celery import current_app

    # The fetch takes over a second (a timeout, then a retry): time for the revoke to arrive.
    with translation.override("en"):
        page = submit(page_server.url("slow"))
    current_app.control.revoke(page.parse_task_id)
    page = finished(page)
    assert page.status == PageInfo.Status.FAILED
    assert page.error == (
        "The parse_page step was cancelled before it ran. The steps after it did not run."
    )
    wait_for(lambda: states(page) == ["SUCCESS", "REVOKED", "PENDING"], timeout=WAIT)
    assert [step["state"] for step in services.chain_steps(page)] == [
        "SUCCESS",
        "REVOKED",
        services.NOT_RUN,
    ]


def test_get_inside_a_task_is_refused_by_celery(pages_worker, page_server: PageServer) -> None:
    page = make_page(url=page_server.url("normal"))

    result = update_page_info_blocking.delay(page.pk)

    row = wait_for(
        lambda: TaskResult.objects.filter(task_id=result.id, status="FAILURE").first(),
        timeout=WAIT,
    )
    assert "Never call result.get() within a task!" in row.result
    error = AsyncResult(result.id).result
    assert isinstance(error, RuntimeError)
    # The child was sent before .get() was refused; it ran, nobody waited for it.
    [child] = AsyncResult(result.id).children
    assert child.get(timeout=WAIT)["status_code"] == 200


def test_a_worker_with_the_default_setting_refuses_the_local_network(
    start_worker, page_server: PageServer
) -> None:
    # A queue of its own, so the module's permissive worker takes none of these tasks.
    start_worker(queues="pages_guarded", name="guarded", concurrency=1)
    urls = [page_server.url("normal"), page_server.url("normal").replace("127.0.0.1", "localhost")]
    pages = []
    for url in urls:
        page = make_page(url=url)
        workflow = services.page_chain(page)
        for task in workflow.tasks:
            task.set(queue="pages_guarded")
        workflow.apply_async()
        pages.append(page)
    for page, url in zip(pages, urls, strict=True):
        page = finished(page)
        assert page.status == PageInfo.Status.FAILED
        assert "internal network" in page.error
        assert page_server.hits(httpx.URL(url).raw_path.decode()) == 0


def test_fetched_from_the_task_console_the_chain_shows_as_its_children(
    client: Client, settings, pages_worker, page_server: PageServer
) -> None:
    settings.PAGES_ALLOW_PRIVATE_ADDRESSES = True
    user = make_user("pages.add_pageinfo", "taskconsole.view_taskrecord", "taskconsole.launch_task")
    client.force_login(user)
    url = page_server.url("normal")
    response = client.post(
        "/console/api/launch/",
        json.dumps({"task": "pages.tasks.submit_url", "arguments": {"url": url}}),
        content_type="application/json",
    )
    assert response.status_code == 201
    launched_id = response.json()["task_id"]

    page = finished(wait_for(lambda: PageInfo.objects.filter(url=url).first(), timeout=WAIT))
    assert page.status == PageInfo.Status.DONE
    assert page.created_by == user  # on the launcher's own list of pages
    ids = [launched_id, *page.task_ids]
    rows = wait_for(
        lambda: (
            len(found := TaskRecord.objects.filter(task_id__in=ids, status=TaskStatus.SUCCESS)) == 4
            and {row.task_id: row for row in found}
        ),
        timeout=WAIT,
    )
    launched, fetch, parse, store = (rows[task_id] for task_id in ids)
    assert (launched.origin, launched.result) == (Origin.CONSOLE, str(page.pk))
    assert [fetch.name, parse.name, store.name] == [name for _field, name in services.CHAIN_STEPS]
    assert [fetch.parent_id, parse.parent_id, store.parent_id] == [
        launched_id,
        fetch.task_id,
        parse.task_id,
    ]
    assert {row.root_id for row in (fetch, parse, store)} == {launched_id}
    assert {row.owner_id for row in rows.values()} == {user.pk}

    # What the console's detail page shows for the middle of the chain.
    relations = client.get(f"/console/api/tasks/{parse.task_id}/").json()["relations"]
    assert [r["task_id"] for r in relations["parent"]] == [fetch.task_id]
    assert [r["task_id"] for r in relations["children"]] == [store.task_id]
    page_html = client.get(f"/console/tasks/{launched_id}/").content.decode()
    assert f"/console/tasks/{fetch.task_id}/" in page_html
