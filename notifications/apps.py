from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = _("Notifications")

    def ready(self) -> None:
        from taskconsole.signals import when_cancelled

        from . import (
            checks,  # noqa: F401  (registers the system checks)
            services,
        )

        when_cancelled(
            [services.DISPATCH_TASK, services.BATCH_TASK],
            services.on_cancelled,
            dispatch_uid="notifications_cancelled",
        )
