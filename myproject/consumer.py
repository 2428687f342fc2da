"""The worker's consumer: Celery's, without message bodies' secrets in its error log lines.

When a worker refuses a message — a task name it does not know, a content type it does not
accept (pickle), a body it cannot decode, a message that is not a task — Celery's consumer logs
"the full contents of the message body" and its headers (`dump_body`): the arguments, passwords
and API keys included, in plain text. These handlers log what an operator needs to act on
instead: the task's name and id, why the message was refused, its queue, the arguments with
secret-looking values redacted as in the task console (`taskconsole.redaction`; a body that
cannot be decoded, pickle among them, is not shown at all), and of the headers the harmless
ones (the others are named, not shown). The rest is Celery's: the message is rejected, an
unknown task's result is marked FAILURE with NotRegistered, its task-failed event is sent, and
task_unknown / task_rejected go out (the console ends its record on them).

The arguments are redacted by key (`password`, `api_key`…), and in every string by the text
rules (`password=…`, `token: …`, a password in a URL); so is the text of the refusal's reason.

It also wraps each event dispatcher the worker makes (`event_dispatcher`), so that the text of
a task's outcome in its events — the repr of its return value, its exception and traceback,
which Flower shows — has its secrets hidden before it leaves the worker
(taskconsole.worker_redaction).

Installed with `CELERY_WORKER_CONSUMER = "myproject.consumer:Consumer"`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from celery.utils.text import truncate
from celery.worker.consumer import consumer as celery_consumer
from celery.worker.consumer.consumer import Consumer as CeleryConsumer
from celery.worker.consumer.consumer import logger

from taskconsole.redaction import redact, redact_text
from taskconsole.worker_redaction import redact_events

#: Headers logged with their values; the others (argsrepr, kwargsrepr, custom ones) by name.
SHOWN_HEADERS = (
    "task",
    "id",
    "shadow",
    "root_id",
    "parent_id",
    "group",
    "retries",
    "eta",
    "expires",
    "origin",
)
BODY_LIMIT = 1024

UNKNOWN_TASK = """\
Received unregistered task of type %r (id %s). The message has been rejected and its result \
marked FAILURE (NotRegistered).
Did you remember to import the module containing this task? Is its name spelt as registered?
Body (secret-looking values redacted): %s
Headers: %s
Delivery info: %s"""

INVALID_TASK = """\
Received invalid task message: %s (task %r, id %s). The message has been rejected.
Body: %s
Headers: %s
Delivery info: %s"""

DECODE_ERROR = """\
Can't decode message body: %s [type:%r encoding:%r] (task %r, id %s). The message has been \
acknowledged and dropped.
Headers: %s
Delivery info: %s"""

UNKNOWN_MESSAGE = """\
Received and deleted unknown message (not a task message). Wrong destination?
Body (secret-looking values redacted): %s
Headers: %s
Delivery info: %s"""


def shown_body(message: Any, body: Any = None) -> str:
    """The message's arguments for a log line: decoded, redacted and clipped, or not shown.

    `body` is what Celery decoded already (protocol 1); otherwise the message is decoded here
    only through kombu's own check of the accepted content types, so a pickle body is never
    loaded: it, and any body that does not decode, is described instead of shown.
    """
    size = len(message.body or b"")
    if body is None:
        try:
            body = message.decode()
        except Exception:
            return f"(not shown: {size} bytes of {message.content_type or 'unknown type'})"
    redacted, _ = redact(body)
    try:
        text = json.dumps(redacted, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(redacted)
    return f"{truncate(text, BODY_LIMIT)} ({size}b)"


def shown_headers(message: Any) -> str:
    headers = message.headers if isinstance(message.headers, dict) else {}
    shown = {name: headers[name] for name in SHOWN_HEADERS if headers.get(name) is not None}
    others = sorted(str(name) for name in headers if name not in SHOWN_HEADERS)
    text = truncate(repr(shown), BODY_LIMIT)
    return f"{text}; not shown: {', '.join(others)}" if others else text


def shown_delivery(message: Any) -> str:
    info = message.delivery_info or {}
    return repr({key: info.get(key) for key in ("exchange", "routing_key", "redelivered")})


def _name_and_id(message: Any, payload: Any = None) -> tuple[Any, Any]:
    headers = message.headers if isinstance(message.headers, dict) else {}
    if "task" in headers or "id" in headers:
        return headers.get("task"), headers.get("id")
    if isinstance(payload, dict):  # protocol 1
        return payload.get("task"), payload.get("id")
    return None, None


@contextlib.contextmanager
def _without(template: str) -> Iterator[None]:
    """Drop the log record Celery makes from `template` (it dumps the whole body) meanwhile.

    The worker's consumer runs in one thread, and only that exact template is dropped, so
    Celery's handler below runs unchanged, whatever else it does in a later release.
    """

    def keep(record: logging.LogRecord) -> bool:
        return record.msg is not template

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


#: "Trying again in 8.00 seconds... (3/None)" counted against a maximum that is not there.
RETRY_STEP_WITHOUT_LIMIT = "Trying again {when}... (attempt {retries}; no limit)"


class Consumer(CeleryConsumer):
    """Celery's consumer with the message-refusing handlers' logging made safe (see above)."""

    _event_dispatcher: Any = None

    @property
    def event_dispatcher(self) -> Any:
        return self._event_dispatcher

    @event_dispatcher.setter
    def event_dispatcher(self, dispatcher: Any) -> None:
        # Set by Celery's Events bootstep on every (re)connection; read by the task strategies
        # and requests, which send their events through it.
        self._event_dispatcher = redact_events(dispatcher) if dispatcher is not None else None

    def ensure_connected(self, conn: Any) -> Any:
        # Celery reads its retry line from a module global each time it starts connecting;
        # the product retries for ever (CELERY_BROKER_CONNECTION_MAX_RETRIES = None).
        if self.app.conf.broker_connection_max_retries is None:
            celery_consumer.CONNECTION_RETRY_STEP = RETRY_STEP_WITHOUT_LIMIT
        return super().ensure_connected(conn)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        name, task_id = _name_and_id(message)
        logger.critical(
            DECODE_ERROR,
            redact_text(f"{type(exc).__name__}: {exc}"),
            message.content_type,
            message.content_encoding,
            name,
            task_id,
            shown_headers(message),
            shown_delivery(message),
            exc_info=True,
        )
        with _without(celery_consumer.MESSAGE_DECODE_ERROR):
            super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        logger.warning(
            UNKNOWN_MESSAGE,
            shown_body(message, body),
            shown_headers(message),
            shown_delivery(message),
        )
        with _without(celery_consumer.UNKNOWN_FORMAT):
            super().on_unknown_message(body, message)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        name, task_id = _name_and_id(message, body)
        logger.error(
            INVALID_TASK,
            redact_text(str(exc)),
            name,
            task_id,
            shown_body(message, body),
            shown_headers(message),
            shown_delivery(message),
            exc_info=True,
        )
        with _without(celery_consumer.INVALID_TASK_ERROR):
            super().on_invalid_task(body, message, exc)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        name, task_id = _name_and_id(message, body)
        logger.error(
            UNKNOWN_TASK,
            name,
            task_id,
            shown_body(message, body),
            shown_headers(message),
            shown_delivery(message),
        )
        with _without(celery_consumer.UNKNOWN_TASK_ERROR):
            super().on_unknown_task(body, message, exc)
