"""Writes that wait for a database that went away, instead of failing at once.

A worker's write about a task that already ran (its outcome, its claim) cannot be put off to a
later request: given up, the task's record stays wrong or the task is lost. It waits instead,
backing off up to 5 s between tries, on a new connection each time.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connections, router

logger = logging.getLogger(__name__)
T = TypeVar("T")


def waiting_for_database(write: Callable[[], T], *, seconds: float, model: Any) -> T:
    """Run `write`, again while the database is unreachable, for `seconds` at most (then raise).

    `model` says which database: its connection is closed after a failure, so the next try
    opens a new one instead of reusing the broken one.
    """
    give_up = time.monotonic() + seconds
    pause = 0.1
    while True:
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + pause > give_up:
                raise
            if pause == 0.1:
                logger.warning(
                    "Database unreachable (%s); waiting for it, %d s at most.", exc, seconds
                )
            with contextlib.suppress(DatabaseError):
                connections[router.db_for_write(model)].close()
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
