"""The baseline: a minimal Celery app with no Django recording, on the bench's broker.

    celery -A bench.bare worker -Q default -c 2 -P prefork

BARE_RESULTS=ignore (default) ignores results; BARE_RESULTS=django-db stores them with
django-celery-results in the bench database through bench.bare_settings (Django with
django_celery_results only: no taskconsole, no signals of the product).
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

RESULTS = os.environ.get("BARE_RESULTS", "ignore")

if RESULTS == "django-db":
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.bare_settings"
    import django

    django.setup()

app = Celery("bare", set_as_current=False)
app.conf.update(
    broker_url=os.environ["CELERY_BROKER_URL"],
    broker_connection_retry_on_startup=True,
    task_default_queue="default",
    task_default_exchange="default",
    task_default_routing_key="default",
    task_queues=(Queue("default", Exchange("default"), routing_key="default"),),
    accept_content=["application/json"],
    task_serializer="json",
    result_serializer="json",
    task_ignore_result=RESULTS == "ignore",
    result_backend="django-db" if RESULTS == "django-db" else None,
    worker_hijack_root_logger=False,
)

from bench import counter  # noqa: E402


@app.task(name="bare.noop")
def noop(key: str) -> None:
    counter.done(key)


@app.task(name="bare.item")
def item(key: str, n: int) -> int:
    """One work item per message: the per-message baseline for batched work."""
    counter.done(key)
    return n


@app.task(name="bare.probe")
def probe(key: str, sent_at: float) -> None:
    counter.started(key, sent_at)
