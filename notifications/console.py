"""Notifications on the task console's launch list: send a stored notification by its id."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from taskconsole import registry

from .models import Delivery, Notification
from .tasks import send_notification

SEND_PERMISSION = "notifications.change_notification"


class SendNotificationArgs(BaseModel):
    notification_id: int = Field(
        title=gettext_lazy("Notification"),
        description=gettext_lazy("The id of the notification to send."),
        ge=1,
    )
    retry_failed: bool = Field(
        False,
        title=gettext_lazy("Retry the failed recipients"),
        description=gettext_lazy(
            "Send again to the recipients that failed, instead of those never sent."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _may_send(cls, data: Any) -> Any:
        # The console's launch permission is not enough: sending needs what the page needs.
        registry.require_permission(SEND_PERMISSION, _("You may not send notifications."))
        return data

    @field_validator("notification_id")
    @classmethod
    def _exists(cls, value: int) -> int:
        if not Notification.objects.filter(pk=value).exists():
            raise PydanticCustomError(
                "not_found", _("There is no notification with id %(id)s.") % {"id": value}
            )
        return value

    @model_validator(mode="after")
    def _someone_is_waiting(self) -> SendNotificationArgs:
        deliveries = Delivery.objects.filter(notification_id=self.notification_id)
        if self.retry_failed:
            waiting = deliveries.filter(status=Delivery.Status.FAILED)
        else:
            waiting = deliveries.filter(status=Delivery.Status.PENDING, batch_task_id="")
        if not waiting.exists():
            raise PydanticCustomError(
                "nothing_to_send", _("No recipient of this notification is waiting to be sent.")
            )
        return self


registry.register(
    send_notification,
    schema=SendNotificationArgs,
    label=gettext_lazy("Send a notification"),
    description=gettext_lazy(
        "Sends a stored notification to its recipients in batches, as its page's Send button "
        "does. Needs the permission to change notifications."
    ),
)
