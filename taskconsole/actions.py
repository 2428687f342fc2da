"""The one action layer: launch, cancel, retry and schedule changes, for HTML and JSON alike.

Every action checks its permission, records an AuditEntry and raises ActionError (with the
HTTP status the API answers) when it refuses; a refused action publishes nothing.
"""

from __future__ import annotations

import inspect
import json
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from celery import current_app
from celery.utils import uuid
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from pydantic import ValidationError

from . import buffer, permissions, queries, registry, unsent
from .capture import RETRY_OF_HEADER, buffers_here
from .conf import has_beat
from .context import Launcher, acting, launched_by
from .models import (
    WAITING_STATES,
    AuditAction,
    AuditEntry,
    Origin,
    TaskRecord,
    TaskStatus,
)
from .redaction import redact, text_of
from .signals import announce_cancelled
from .validation import closed, errors_by_field

logger = logging.getLogger(__name__)


@dataclass
class ActionError(Exception):
    """A refused action: the message is for people, code for scripts, status for HTTP."""

    status: int
    code: str
    message: str
    errors: dict[str, list[str]] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"error": self.code, "detail": self.message}
        if self.errors:
            data["errors"] = self.errors
        return data


def max_args_bytes() -> int:
    return int(getattr(settings, "TASKCONSOLE_MAX_ARGS_BYTES", 16 * 1024))


def _audit_entry(user, action: str, target: str, details: dict[str, Any]) -> buffer.Audit:
    user_id = user.pk if user is not None and user.is_authenticated else None
    return buffer.Audit(user_id, action, target[:255], details, timezone.now())


def audit(user, action: str, target: str, **details: Any) -> AuditEntry:
    entry = _audit_entry(user, action, target, details).entry()
    entry.save()
    return entry


def audit_publish(user, action: str, target: str, **details: Any) -> None:
    """The audit entry of an action that published a task: written like the task's record.

    Where the record went to the publish buffer (taskconsole.capture.buffers_here), the entry
    follows it there, and the buffer's next batch writes both: the request waits for no
    commit. Inside a transaction both are written at once.
    """
    pending = _audit_entry(user, action, target, details)
    if buffers_here():
        buffer.add_audit(pending)
    else:
        pending.entry().save()


def validate_arguments(
    user, name: str, arguments: Any
) -> tuple[registry.Launchable, dict[str, Any]]:
    """The registry entry and the validated keyword arguments, or ActionError.

    The schema's validators check `user`'s permissions (registry.require_permission).
    """
    launchable = registry.get(name) if isinstance(name, str) else None
    if launchable is None:
        if isinstance(name, str) and name in current_app.tasks:
            raise ActionError(
                403,
                "not_launchable",
                _("The task %(name)s is not on the console's launch list.") % {"name": name},
            )
        raise ActionError(
            404, "unknown_task", _("There is no task named %(name)s.") % {"name": name}
        )
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ActionError(
            400, "invalid_arguments", _("The arguments must be an object of named values.")
        )
    text = json.dumps(arguments, default=str)
    size = len(text.encode())
    if size > max_args_bytes():
        raise ActionError(
            413,
            "arguments_too_large",
            _("The arguments are %(size)d bytes; at most %(limit)d are accepted.")
            % {"size": size, "limit": max_args_bytes()},
        )
    try:
        # Closed: a misspelt optional argument is refused, not dropped as pydantic would.
        # Strict, on the arguments as JSON: each value must be of its field's JSON type (true
        # is not 1, "1" is not 1, 1.0 is not an integer), where pydantic's lax mode would
        # quietly change what was asked. JSON's strings still give dates, UUIDs, Decimals and
        # enums' values. The launch form turns what was typed into JSON values first (forms.py).
        with acting(user):
            validated = closed(launchable.schema).model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise ActionError(
            400,
            "invalid_arguments",
            _("The arguments are not valid for %(name)s.") % {"name": name},
            errors_by_field(exc),
        ) from exc
    return launchable, validated.model_dump(mode="json")


def named_arguments(name: str, args: list, kwargs: dict) -> dict[str, Any]:
    """A stored call's arguments by name, so the launch form's schema can check them all.

    Records and schedules keep what the code sent, often positional (`delay(article.pk)`); a
    replay by hand is checked as a launch is, which names every argument.
    """
    if not args:
        return kwargs
    task = current_app.tasks.get(name)
    try:
        bound = inspect.signature(task.run).bind(*args, **kwargs)
    except (AttributeError, TypeError, ValueError):
        bound = None
    kinds = {p.name: p.kind for p in bound.signature.parameters.values()} if bound else {}
    if bound is None or inspect.Parameter.VAR_POSITIONAL in {kinds[key] for key in bound.arguments}:
        raise ActionError(
            409,
            "unmatched_arguments",
            _("The stored arguments do not match the task's launch form: start it from there."),
        )
    named: dict[str, Any] = {}
    for key, value in bound.arguments.items():
        if kinds[key] == inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        else:
            named[key] = value
    return named


def _not_queued(name: str, exc: Exception) -> ActionError:
    """A publish the broker refused or did not answer, for the page and the API.

    The driver's own error (in English, naming the broker's host and port) goes to the log, and
    to the task's record, "Not published: …" (taskconsole.unsent): not into the message people
    read in their language.
    """
    logger.error("Could not publish %s: %s: %s", name, type(exc).__name__, exc)
    if unsent.unanswered(exc):
        return ActionError(
            503,
            "broker_unavailable",
            _(
                "The broker did not answer in time: the task may still be queued. Look for it "
                "in the task list before you launch it again."
            ),
        )
    return ActionError(
        503,
        "broker_unavailable",
        _("The task could not be queued: the broker does not answer."),
    )


def _publish(
    user,
    launchable: registry.Launchable,
    args: list,
    kwargs: dict,
    *,
    retry_of: TaskRecord | None = None,
    shown: dict | None = None,
) -> str:
    options = dict(launchable.options)
    if shown is not None:
        # Validated arguments are JSON values: repr() gives Celery's text form of them without
        # its saferepr, which took longer than anything else the launch adds to a publish.
        amqp = current_app.amqp
        options["argsrepr"] = text_of(tuple(args), amqp.argsrepr_maxsize)
        options["kwargsrepr"] = text_of(shown, amqp.kwargsrepr_maxsize)
    if retry_of is not None:
        options["headers"] = {**options.get("headers", {}), RETRY_OF_HEADER: retry_of.pk}
    task = current_app.tasks.get(launchable.name)
    eager = bool(current_app.conf.task_always_eager)
    if eager:
        # The task runs here, now (CELERY_TASK_ALWAYS_EAGER). With EAGER_PROPAGATES its own
        # error comes up through apply_async: the task failed, the broker is not involved.
        options.setdefault("task_id", uuid())
    try:
        with launched_by(Launcher(user.pk, Origin.CONSOLE)):
            if task is not None:
                # The task object stamps its own time limits and routes on the message.
                result = task.apply_async(args=args, kwargs=kwargs, **options)
            else:
                result = current_app.send_task(launchable.name, args=args, kwargs=kwargs, **options)
    except Exception as exc:
        if eager and task is not None:
            # send_task (a task this process does not know) publishes even in eager mode: its
            # errors are the broker's, below.
            logger.info("Task %s failed in eager mode: %s", options["task_id"], type(exc).__name__)
            return options["task_id"]
        raise _not_queued(launchable.name, exc) from exc
    return result.id


def launch(user, name: Any, arguments: Any) -> str:
    """Validate and publish a task from the launch list; returns its task id."""
    if not permissions.can_launch(user):
        raise ActionError(403, "forbidden", _("You may not launch tasks."))
    launchable, kwargs = validate_arguments(user, name, arguments)
    # The task's record redacts secret-looking arguments: so do the audit trail and the
    # message's text form of them (what the worker's log and Flower show).
    shown, _redacted = redact(kwargs)
    task_id = _publish(user, launchable, [], kwargs, shown=shown)
    audit_publish(user, AuditAction.LAUNCH, task_id, task=launchable.name, kwargs=shown)
    return task_id


def _visible_or_404(user, task_id: str) -> TaskRecord:
    record = queries.get_task(user, task_id)
    if record is None:
        raise ActionError(404, "not_found", _("No such task."))
    return record


def cancel(user, task_id: str) -> TaskRecord:
    """Revoke a waiting task (durably), or terminate a running one where its policy allows."""
    if not permissions.can_cancel(user):
        raise ActionError(403, "forbidden", _("You may not cancel tasks."))
    record = _visible_or_404(user, task_id)
    was_queued = record.status == TaskStatus.QUEUED
    launchable = registry.get(record.name)
    can_terminate = bool(launchable and launchable.can_terminate)
    now = timezone.now()
    with transaction.atomic():
        # The durable part: a worker that receives this task later checks cancel_requested_at.
        # A waiting task is marked REVOKED only if it is still waiting at the moment of the
        # write; one that started in between is handled as running.
        waiting = TaskRecord.objects.filter(pk=record.pk, status__in=WAITING_STATES).update(
            status=TaskStatus.REVOKED, finished_at=now, cancel_requested_at=now
        )
        terminate = False
        if not waiting:
            record.refresh_from_db()
            if record.is_finished:
                raise ActionError(409, "finished", _("This task has already finished."))
            if not can_terminate:
                raise ActionError(
                    409,
                    "cannot_terminate",
                    _("This task is running and its policy does not allow stopping it."),
                )
            terminate = True
            TaskRecord.objects.filter(pk=record.pk).update(cancel_requested_at=now)
        # A task that has just started may still read QUEUED here: its worker writes STARTED
        # a moment later (taskconsole.writeback). Where the policy allows stopping it, the
        # broadcast says terminate; a worker that has not started the task simply drops it.
        stop = terminate or (was_queued and bool(waiting) and can_terminate)
        audit(user, AuditAction.CANCEL, record.task_id, task=record.name, terminate=stop)
    try:
        current_app.control.revoke(record.task_id, terminate=stop, signal="SIGTERM")
    except Exception as exc:
        # Workers that are down will find the revocation in the database when they start.
        logger.warning("Could not broadcast revoke of %s: %s", record.task_id, exc)
    record.refresh_from_db()
    if waiting:
        # It will never run: its app need not wait for a worker to discard the message.
        transaction.on_commit(
            partial(announce_cancelled, record.task_id, record.name, record.args, record.kwargs)
        )
    return record


def retry(user, task_id: str) -> str:
    """Launch a failed (or revoked) task again with its original arguments."""
    if not permissions.can_launch(user):
        raise ActionError(403, "forbidden", _("You may not launch tasks."))
    record = _visible_or_404(user, task_id)
    if record.status not in {TaskStatus.FAILURE, TaskStatus.REVOKED}:
        raise ActionError(409, "not_failed", _("Only a failed or revoked task can be retried."))
    if record.redacted:
        raise ActionError(
            409,
            "redacted",
            _("Some arguments of this task were redacted, so it cannot be replayed."),
        )
    launchable = registry.get(record.name)
    if launchable is None:
        raise ActionError(
            403,
            "not_launchable",
            _("The task %(name)s is not on the console's launch list.") % {"name": record.name},
        )
    args = list(record.args) if isinstance(record.args, list) else []
    kwargs = dict(record.kwargs) if isinstance(record.kwargs, dict) else {}
    # Checked as a launch: the schema, and with it the app's own permission for the task.
    kwargs = validate_arguments(user, record.name, named_arguments(record.name, args, kwargs))[1]
    new_id = _publish(user, launchable, [], kwargs, retry_of=record)
    audit_publish(user, AuditAction.RETRY, new_id, task=record.name, retry_of=record.task_id)
    return new_id


# Periodic tasks ----------------------------------------------------------------------------


def _periodic(user, pk: Any):
    if not permissions.can_change_schedule(user):
        raise ActionError(403, "forbidden", _("You may not change periodic tasks."))
    task = None
    if has_beat() and str(pk).isdigit():
        from django_celery_beat.models import PeriodicTask

        task = PeriodicTask.objects.filter(pk=pk).first()
    if task is None:
        raise ActionError(404, "not_found", _("No such periodic task."))
    return task


def set_enabled(user, pk: Any, enabled: bool):
    task = _periodic(user, pk)
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    with transaction.atomic():
        # update() + update_changed(): beat reloads, and the admin-edit audit hook stays quiet.
        PeriodicTask.objects.filter(pk=task.pk).update(enabled=enabled)
        PeriodicTasks.update_changed()
        audit(
            user,
            AuditAction.SCHEDULE_ENABLE if enabled else AuditAction.SCHEDULE_DISABLE,
            task.name,
            task=task.task,
        )
    task.refresh_from_db()
    return task


def _validated_call(user, task, args: Any, kwargs: Any) -> tuple[list, dict]:
    """A periodic task's stored arguments as its launch form's schema validates them, or 400.

    Arguments stored by position are sent by position again, each in the form validation gave
    it; the others, and the schema's defaults, by name.
    """
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ActionError(
            400,
            "invalid_arguments",
            _(
                "The stored arguments of %(name)s must be a JSON array (args) and a JSON "
                "object (kwargs): correct them in the admin."
            )
            % {"name": task.name},
        )
    try:
        validated = validate_arguments(user, task.task, named_arguments(task.task, args, kwargs))[1]
    except ActionError as exc:
        if exc.code != "invalid_arguments":
            raise
        raise ActionError(
            400,
            "invalid_arguments",
            _(
                "The stored arguments of %(name)s are not valid for %(task)s: correct them in "
                "the admin."
            )
            % {"name": task.name, "task": task.task},
            exc.errors,
        ) from exc
    if not args:
        return [], validated
    names = list(inspect.signature(current_app.tasks[task.task].run).parameters)[: len(args)]
    if not all(key in validated for key in names):
        return [], validated
    return [validated[key] for key in names], {
        key: value for key, value in validated.items() if key not in names
    }


def run_now(user, pk: Any) -> str:
    task = _periodic(user, pk)
    # Running it by hand is a launch: the launch permission, and the launch list (or the app's
    # word that its task may be run by hand) decide, as for the launch form.
    if not permissions.can_launch(user):
        raise ActionError(403, "forbidden", _("You may not launch tasks."))
    try:
        args = json.loads(task.args or "[]")
        kwargs = json.loads(task.kwargs or "{}")
    except ValueError as exc:
        raise ActionError(
            400, "invalid_arguments", _("The stored arguments are not JSON.")
        ) from exc
    if (
        task.task.startswith("celery.")
        or task.task not in current_app.tasks
        or not registry.runnable_by_hand(task.task)
    ):
        # Celery's built-ins, unknown names and tasks no app lets anyone run by hand.
        raise ActionError(
            403,
            "not_launchable",
            _("This periodic task runs %(task)s, which cannot be started by hand.")
            % {"task": task.task},
        )
    # Whoever runs it by hand is asked what a launch of the task asks: the launch form's checks
    # (with the app's own permission) for a task on the launch list, else the permission its
    # app requires to run it by hand. What is sent is what the checks passed: the validated
    # values, not the stored ones (beat itself sends those, unchecked, on schedule).
    if registry.get(task.task) is not None:
        args, kwargs = _validated_call(user, task, args, kwargs)
    elif refusal := registry.run_refusal(user, task.task):
        raise ActionError(403, "forbidden", refusal)
    options: dict[str, Any] = {"headers": {"periodic_task_name": task.name}}
    if task.queue:
        options["queue"] = task.queue
    try:
        with launched_by(Launcher(user.pk, Origin.CONSOLE, task.name)):
            result = current_app.send_task(task.task, args=args, kwargs=kwargs, **options)
    except Exception as exc:
        raise _not_queued(task.task, exc) from exc
    audit_publish(user, AuditAction.SCHEDULE_RUN, task.name, task=task.task, task_id=result.id)
    return result.id
