"""An email backend whose answers a test writes in advance."""

from __future__ import annotations

from typing import ClassVar

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend


class ScriptedBackend(BaseEmailBackend):
    """Records sent messages; raises the scripted exception for an address, one per send.

    script: address -> outcomes, one consumed per attempt (None means accept).
    open_error: raised by open(), once.
    """

    script: ClassVar[dict[str, list[Exception | None]]] = {}
    open_error: ClassVar[Exception | None] = None
    sent: ClassVar[list[EmailMessage]] = []
    opened: ClassVar[int] = 0
    closed: ClassVar[int] = 0

    @classmethod
    def reset(cls) -> None:
        cls.script = {}
        cls.open_error = None
        cls.sent = []
        cls.opened = 0
        cls.closed = 0

    def open(self) -> bool:
        if type(self).open_error is not None:
            error, type(self).open_error = type(self).open_error, None
            raise error
        type(self).opened += 1
        return True

    def close(self) -> None:
        type(self).closed += 1

    def send_messages(self, email_messages: list[EmailMessage]) -> int:
        for message in email_messages:
            outcomes = self.script.get(message.to[0], [])
            outcome = outcomes.pop(0) if outcomes else None
            if outcome is not None:
                raise outcome
            self.sent.append(message)
        return len(email_messages)
