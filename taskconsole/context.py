"""Who is publishing right now: set by the console's actions, the middleware and workers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass


@dataclass(frozen=True)
class Launcher:
    """The user (if any) and origin stamped on tasks published while this is current."""

    user_id: int | None
    origin: str
    detail: str = ""


_current: ContextVar[Launcher | None] = ContextVar("taskconsole_launcher", default=None)
#: The request being served, so the owner is read lazily only when a task is published.
_request: ContextVar[object | None] = ContextVar("taskconsole_request", default=None)
#: The user a console action is checked for (launch, retry, run now), middleware or not.
_acting: ContextVar[object | None] = ContextVar("taskconsole_acting", default=None)


#: models.Origin.WEB (the models are not imported here: this module is loaded early).
WEB = "web"


def current_launcher() -> Launcher | None:
    launcher = _current.get()
    if launcher is not None:
        return launcher
    request = _request.get()
    if request is not None:
        # Any request is a web request, named by its path (without the query string, which
        # may carry tokens); a signed-in user owns its tasks, an anonymous visitor's have none.
        user = current_request_user()
        return Launcher(user.pk if user is not None else None, WEB, _path(request))
    return None


def _path(request: object) -> str:
    return str(getattr(request, "path", "") or "")


@contextlib.contextmanager
def _holding(var: ContextVar, value: object) -> Iterator[None]:
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def launched_by(launcher: Launcher | None) -> contextlib.AbstractContextManager[None]:
    return _holding(_current, launcher)


def serving(request: object) -> contextlib.AbstractContextManager[None]:
    return _holding(_request, request)


def acting(user: object) -> contextlib.AbstractContextManager[None]:
    return _holding(_acting, user)


def current_actor():
    """The user a console action is for, else the request's (None in a shell or a script)."""
    user = _acting.get()
    return user if user is not None else current_request_user()


def current_request_user():
    """The authenticated user of the request being served, if any (for the audit of edits)."""
    request = _request.get()
    user = getattr(request, "user", None) if request is not None else None
    return user if user is not None and user.is_authenticated else None


def set_worker_launcher(launcher: Launcher | None) -> Token:
    """Used around a running task: it is the launcher of what it publishes.

    Returns the token that puts the previous launcher back (restore_launcher): a task run in
    eager mode inside another task, or inside a request, must not leave its caller with none.
    """
    return _current.set(launcher)


def restore_launcher(token: Token) -> None:
    try:
        _current.reset(token)
    except ValueError:  # made in another context (thread): start afresh there
        _current.set(None)
