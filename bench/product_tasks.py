"""Tiny tasks run by the product's own worker (`celery -A myproject worker -I bench.product_tasks`).

They are shared tasks of the product's Celery app, so the product's configuration applies:
the django-db results, the console's lifecycle record, events, the worker settings.
"""

from __future__ import annotations

from celery import shared_task

from bench import counter


@shared_task(name="bench.noop")
def noop(key: str) -> None:
    counter.done(key)


@shared_task(name="bench.probe")
def probe(key: str, sent_at: float) -> None:
    counter.started(key, sent_at)
