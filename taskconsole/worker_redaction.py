"""What a worker says about a task outside the database, without secrets: logs and events.

Celery's worker logs a task's return value ("succeeded in 0.01s: …") and its exception
("raised unexpected: …", with the traceback), and sends them in its task events (Flower shows
`result`, `exception` and `traceback`). Both are made from the task's own text, so a password
in an exception's message or a returned URL would be printed and shown as it is.

- `RedactSecrets`, a logging filter, is put on Celery's worker loggers by `install()`
  (`capture.connect`, in every process: a prefork pool's children inherit it). It needs no
  LOGGING entry; it can also be put on a handler there, for every logger's records.
- `redact_events(dispatcher)` makes a worker's event dispatcher hide them before an event
  leaves (myproject/consumer.py wraps each dispatcher its consumer makes).
"""

from __future__ import annotations

import logging
from typing import Any

from .redaction import redact_string

#: The loggers Celery's worker reports a task's outcome on: the trace's (its return value, its
#: exception and traceback) and the request's (an exception the pool or a time limit raised).
#: (The consumer's log of a refused message redacts its own: myproject/consumer.py.)
WORKER_LOGGERS = ("celery.app.trace", "celery.worker.request")
#: The task events that carry text the task made, and the fields that hold it.
OUTCOME_EVENTS = frozenset({"task-succeeded", "task-failed", "task-retried"})
OUTCOME_FIELDS = ("result", "exception", "traceback")

_formatter = logging.Formatter()


class RedactSecrets(logging.Filter):
    """Hide secrets in a record's arguments and its exception's traceback; never drops one.

    Celery's lines pass a dict (its context: the repr of the return value, the exception):
    its strings are redacted, and the record's `data` (the same dict, for custom handlers)
    follows. Other records are redacted as their formatted message. A traceback (exc_info)
    is formatted here and redacted into `exc_text`, which formatters print instead of
    formatting it again (exc_info stays, for handlers such as Sentry's).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            _redact_record(record)
        except Exception:  # a log line must never be lost to its redaction
            record.msg, record.args = "(a log line was withheld: it could not be redacted)", ()
            record.exc_info = record.exc_text = None
        return True


def _redact_record(record: logging.LogRecord) -> None:
    args = record.args
    if isinstance(args, dict):
        hidden = None
        for name, value in args.items():
            if isinstance(value, str):
                text, hit = redact_string(value)
                if hit:
                    hidden = hidden or dict(args)
                    hidden[name] = text
        if hidden is not None:
            if getattr(record, "data", None) is args:
                record.data = hidden
            record.args = hidden
    elif args:
        message, hit = redact_string(record.getMessage())
        if hit:
            record.msg, record.args = message, ()
    elif isinstance(record.msg, str):
        record.msg = redact_string(record.msg)[0]
    if record.exc_info and not record.exc_text:
        record.exc_text = redact_string(_formatter.formatException(record.exc_info))[0]
    elif record.exc_text:
        record.exc_text = redact_string(record.exc_text)[0]


_filter = RedactSecrets()


def install() -> None:
    """Put the filter on Celery's worker loggers, once (a logger's filter survives dictConfig)."""
    for name in WORKER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactSecrets) for existing in logger.filters):
            logger.addFilter(_filter)


def redact_event_fields(type: str, fields: dict[str, Any]) -> None:
    """Hide secrets in a task outcome event's text fields, in place (other events untouched)."""
    if type not in OUTCOME_EVENTS:
        return
    for name in OUTCOME_FIELDS:
        value = fields.get(name)
        if isinstance(value, str):
            fields[name] = redact_string(value)[0]


def redact_events(dispatcher: Any) -> Any:
    """Make `dispatcher.send` hide secrets in task outcome events; returns the dispatcher.

    Wraps the instance's send (every task event the worker sends goes through it: the
    request's, the strategy's, the consumer's), once.
    """
    send = dispatcher.send
    if getattr(send, "redacts_secrets", False):
        return dispatcher

    def redacting_send(type: str, *args: Any, **fields: Any) -> Any:
        redact_event_fields(type, fields)
        return send(type, *args, **fields)

    redacting_send.redacts_secrets = True  # type: ignore[attr-defined]
    dispatcher.send = redacting_send
    return dispatcher
