from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MaintenanceConfig(AppConfig):
    name = "maintenance"
    verbose_name = _("Maintenance")

    def ready(self) -> None:
        from taskconsole.signals import when_cancelled

        from . import (
            checks,  # noqa: F401  (registers the system checks)
            services,
        )

        when_cancelled(
            services.JOB_TASKS, services.record_cancelled, dispatch_uid="maintenance_cancelled"
        )
