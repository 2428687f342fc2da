"""A real SMTP server for the notifications tests, and a test email backend."""

from __future__ import annotations

import email
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiosmtpd.controller import Controller

from operations.embedded_redis import free_port

from .backends import ScriptedBackend

ANY_ADDRESS = "*"


@dataclass(frozen=True)
class Received:
    recipients: tuple[str, ...]
    to: str
    subject: str
    message_id: str
    notification_id: str


class RecordingHandler:
    """An aiosmtpd handler that records what arrives and refuses what it is told to.

    temporary: address -> how many RCPTs to answer 451 before accepting (ANY_ADDRESS for all).
    permanent: addresses always answered 550.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.configure()

    def configure(
        self, *, temporary: dict[str, int] | None = None, permanent: set[str] | None = None
    ) -> None:
        with self._lock:
            self.temporary = dict(temporary or {})
            self.permanent = set(permanent or ())
            self.received: list[Received] = []
            # address -> [(monotonic time, reply code)], one per RCPT
            self.attempts: dict[str, list[tuple[float, int]]] = defaultdict(list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        with self._lock:
            key = address if address in self.temporary else ANY_ADDRESS
            if address in self.permanent:
                reply = "550 5.1.1 No such user here"
            elif self.temporary.get(key, 0) > 0:
                self.temporary[key] -= 1
                reply = "451 4.3.0 Mailbox busy, try again later"
            else:
                envelope.rcpt_tos.append(address)
                reply = "250 OK"
            self.attempts[address].append((time.monotonic(), int(reply[:3])))
        return reply

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.content)
        with self._lock:
            self.received.append(
                Received(
                    recipients=tuple(envelope.rcpt_tos),
                    to=message["To"],
                    subject=message["Subject"],
                    message_id=message["Message-ID"],
                    notification_id=message["X-Notification-ID"],
                )
            )
        return "250 Message accepted for delivery"

    def received_for(self, notification_id: int) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.notification_id == str(notification_id)]


class LocalSMTPServer:
    """aiosmtpd on 127.0.0.1 and a fixed free port, which can be stopped and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.handler = RecordingHandler()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[LocalSMTPServer]:
    server = LocalSMTPServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def scripted_backend(settings) -> Iterator[type[ScriptedBackend]]:
    settings.EMAIL_BACKEND = "notifications.tests.backends.ScriptedBackend"
    ScriptedBackend.reset()
    yield ScriptedBackend
    ScriptedBackend.reset()
