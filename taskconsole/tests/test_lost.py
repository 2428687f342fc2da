"""Records a killed worker left running: which are failed when it starts again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from taskconsole import lost
from taskconsole.models import LOST, Origin, TaskRecord, TaskStatus

pytestmark = pytest.mark.django_db


def running(task_id: str, name: str = "tc_tests.sleep", **fields) -> TaskRecord:
    defaults = {
        "status": TaskStatus.STARTED,
        "worker": "w@host",
        "started_at": timezone.now() - timedelta(minutes=1),
    }
    return TaskRecord.objects.create(
        task_id=task_id, name=name, origin=Origin.CODE, **{**defaults, **fields}
    )


def test_only_what_no_live_worker_holds_is_failed(monkeypatch) -> None:
    running("gone")
    running("held")  # a live worker of the same name runs it
    running("other", worker="x@host")
    running("later", started_at=timezone.now() + timedelta(minutes=1))
    running("again", name="imports.tasks.process_import_file")  # acks_late: delivered again
    monkeypatch.setattr(lost, "held_by_live_workers", lambda ids: {"held"})
    assert lost.fail_left_running("w@host", timezone.now()) == 1
    states = dict(TaskRecord.objects.values_list("task_id", "status"))
    assert states == {
        "gone": TaskStatus.FAILURE,
        "held": TaskStatus.STARTED,
        "other": TaskStatus.STARTED,
        "later": TaskStatus.STARTED,
        "again": TaskStatus.STARTED,
    }
    assert TaskRecord.objects.get(task_id="gone").exception == LOST


def test_nothing_is_failed_when_the_workers_cannot_be_asked(monkeypatch) -> None:
    running("gone")
    monkeypatch.setattr(lost, "held_by_live_workers", lambda ids: None)
    assert lost.fail_left_running("w@host", timezone.now()) == 0
    assert TaskRecord.objects.get(task_id="gone").status == TaskStatus.STARTED


class Pings:
    """What the workers answer: one set per ping, in turn (None: the question failed)."""

    def __init__(self, *answers: set[str] | None) -> None:
        self.answers = list(answers)
        self.asked: list[list[str] | None] = []

    def __call__(self, timeout: float, destination: list[str] | None = None) -> set[str] | None:
        self.asked.append(destination)
        return self.answers.pop(0)


def stale(task_id: str, worker: str, **fields) -> TaskRecord:
    return running(task_id, worker=worker, started_at=timezone.now() - timedelta(hours=1), **fields)


def states() -> dict[str, str]:
    return dict(TaskRecord.objects.values_list("task_id", "status"))


@pytest.fixture(autouse=True)
def _no_silent_workers_remembered():
    from django.core.cache import cache

    cache.delete(lost.SILENT_KEY)
    yield
    cache.delete(lost.SILENT_KEY)


def test_the_sweep_fails_what_runs_on_workers_silent_in_sweeps_far_enough_apart(
    monkeypatch,
) -> None:
    stale("gone", "old-pod@a")
    stale("progress", "old-pod@a", status=TaskStatus.PROGRESS)
    stale("busy", "slow@b")  # misses the first ping of each sweep, answers the second
    stale("alive", "w@host")
    stale("again", "old-pod@a", name="imports.tasks.process_import_file")  # acks_late
    stale("shell", "laptop")  # an eager run: the bare host name, no worker's
    running("recent", worker="old-pod@a")  # started a minute ago: not yet looked at
    pings = Pings(*[{"w@host"}, {"slow@b"}] * 3)
    monkeypatch.setattr(lost, "_answering", pings)
    # Silent for the first time, then for less than TASKCONSOLE_LOST_AFTER: nothing yet.
    assert lost.sweep(after=300, confirm_after=0, now=1000.0) == 0
    assert lost.sweep(after=300, confirm_after=0, now=1200.0) == 0
    assert pings.asked[:2] == [None, ["old-pod@a", "slow@b"]]
    assert lost.sweep(after=300, confirm_after=0, now=1300.0) == 2
    assert states() == {
        "gone": TaskStatus.FAILURE,
        "progress": TaskStatus.FAILURE,
        "busy": TaskStatus.STARTED,
        "alive": TaskStatus.STARTED,
        "again": TaskStatus.STARTED,
        "shell": TaskStatus.STARTED,
        "recent": TaskStatus.STARTED,
    }
    gone = TaskRecord.objects.get(task_id="gone")
    assert (gone.exception, gone.finished_at is not None) == (LOST, True)


def test_a_worker_that_answers_between_sweeps_starts_its_silence_over(monkeypatch) -> None:
    stale("gone", "old-pod@a")
    silent, back = [{"w@host"}, set()], [{"w@host", "old-pod@a"}]
    monkeypatch.setattr(lost, "_answering", Pings(*silent, *back, *silent, *silent))
    assert lost.sweep(after=300, confirm_after=0, now=1000.0) == 0
    assert lost.sweep(after=300, confirm_after=0, now=1200.0) == 0  # it answered
    assert lost.sweep(after=300, confirm_after=0, now=1400.0) == 0  # silent again since 1400
    assert states() == {"gone": TaskStatus.STARTED}
    assert lost.sweep(after=300, confirm_after=0, now=1700.0) == 1


@pytest.mark.parametrize(
    "answers",
    [
        (set(),),  # nobody answers: the broker, not every worker, may be at fault
        (None,),  # the ping itself failed
        ({"w@host"}, None),  # the confirming ping failed
    ],
)
def test_the_sweep_fails_nothing_when_it_cannot_tell(monkeypatch, answers) -> None:
    stale("gone", "old-pod@a")
    monkeypatch.setattr(lost, "_answering", Pings(*answers))
    assert lost.sweep(after=300, confirm_after=0) == 0
    assert states() == {"gone": TaskStatus.STARTED}


def test_the_sweep_asks_no_worker_when_nothing_has_run_long(monkeypatch) -> None:
    running("recent", worker="old-pod@a")
    pings = Pings()
    monkeypatch.setattr(lost, "_answering", pings)
    assert lost.sweep(after=300) == 0
    assert pings.asked == []


def test_beat_runs_the_sweep(settings) -> None:
    from taskconsole.tasks import sweep_lost_tasks

    entry = settings.CELERY_BEAT_SCHEDULE["taskconsole-sweep-lost"]
    assert entry["task"] == sweep_lost_tasks.name == "taskconsole.tasks.sweep_lost_tasks"


def test_the_result_backend_is_failed_too_unless_it_finished(monkeypatch) -> None:
    from celery import current_app
    from django_celery_results.models import TaskResult

    running("gone")
    running("done-meanwhile")
    TaskResult.objects.create(task_id="gone", status="STARTED")
    TaskResult.objects.create(task_id="done-meanwhile", status="SUCCESS", result="1")
    monkeypatch.setattr(lost, "held_by_live_workers", lambda ids: set())
    assert lost.fail_left_running("w@host", timezone.now()) == 2
    gone = current_app.backend.get_task_meta("gone")
    assert gone["status"] == "FAILURE"
    assert "Lost: its worker stopped" in str(gone["result"])
    assert TaskResult.objects.get(task_id="done-meanwhile").status == "SUCCESS"
