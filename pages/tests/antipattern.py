"""The tutorial's bad example, kept only to show that Celery refuses it.

    @app.task
    def update_page_info(url):
        page = fetch_page.delay(url).get()
        ...

It lives in the tests, not in pages/tasks.py: the integration test starts its worker with
`--include pages.tests.antipattern`, so this task is known to that worker and to no other.
"""

from __future__ import annotations

from celery import shared_task

from pages.tasks import fetch_page


@shared_task
def update_page_info_blocking(page_id: int) -> object:
    # Waiting here would hold a worker process until fetch_page ran, and deadlock once every
    # process waits. Celery raises RuntimeError in a worker before waiting.
    return fetch_page.delay(page_id).get(timeout=30)
