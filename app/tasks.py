"""The tutorial's tasks, one for each setting it shows."""

from __future__ import annotations

import time

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from myproject.celery import app as celery_app

from .models import Event


# app/tasks.py, 可以复用的task
@shared_task
def add(x: int, y: int) -> int:
    time.sleep(2)  # 模拟耗时任务
    return x + y


# 专属于myproject项目的任务: bound to the project's Celery instance with @app.task.
@celery_app.task
def ping() -> str:
    return "pong"


# Routed to the heavy_tasks queue by CELERY_TASK_ROUTES.
@shared_task
def crunch_numbers(n: int) -> int:
    """Sum of the squares below n: CPU work standing in for a heavy job."""
    return sum(i * i for i in range(n))


# 忽略不想要的结果: no result row is stored; the Event row is the task's only trace.
@shared_task(ignore_result=True)
def log_event(message: str) -> None:
    Event.objects.create(message=message)


@shared_task
def nap(seconds: float, ignore_soft_limit: bool = False) -> float:
    """Sleep; shows the soft and hard time limits stopping a task that runs too long."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
        except SoftTimeLimitExceeded:
            if not ignore_soft_limit:
                raise
    return seconds
