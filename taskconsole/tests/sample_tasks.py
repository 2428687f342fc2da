"""Tasks used only by the console's tests; workers import them with `-I`."""

from __future__ import annotations

import time

from celery import shared_task
from pydantic import BaseModel, Field

from taskconsole import progress, registry
from taskconsole.registry import CancelPolicy


@shared_task(name="tc_tests.progress")
def progress_task(steps: int = 5, delay: float = 0.3) -> int:
    for i in range(steps):
        time.sleep(delay)
        progress.report(i + 1, steps, message=f"step {i + 1}")
    return steps


@shared_task(name="tc_tests.fail")
def fail_task(message: str = "boom") -> None:
    raise ValueError(message)


@shared_task(name="tc_tests.flaky", bind=True, max_retries=3)
def flaky_task(self, fail_times: int = 1) -> int:
    if self.request.retries < fail_times:
        raise self.retry(exc=RuntimeError("not yet"), countdown=0.5)
    return self.request.retries


@shared_task(name="tc_tests.sleep")
def sleep_task(seconds: float = 10.0) -> float:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
    return seconds


@shared_task(name="tc_tests.spawn")
def spawn_task() -> str:
    return fail_task.delay("child").id


@shared_task(name="tc_tests.echo")
def echo_task(value: int = 0, api_token: str = "") -> int:
    return value


class ProgressArgs(BaseModel):
    steps: int = Field(5, ge=1, le=100)
    delay: float = Field(0.3, ge=0, le=5)


class FailArgs(BaseModel):
    message: str = Field("boom", max_length=200)


class SleepArgs(BaseModel):
    seconds: float = Field(10.0, ge=0, le=120)


def register_all() -> None:
    registry.register(progress_task, schema=ProgressArgs, label="Progress test")
    registry.register(fail_task, schema=FailArgs, label="Failing test")
    registry.register(
        sleep_task, schema=SleepArgs, label="Sleep test", cancel_policy=CancelPolicy.TERMINATE
    )
    registry.register("tc_tests.sleep_norevoke", schema=SleepArgs, label="Sleep test (revoke only)")
