from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PagesConfig(AppConfig):
    name = "pages"
    verbose_name = _("Pages")

    def ready(self) -> None:
        from taskconsole.signals import task_cancelled

        from . import (
            checks,  # noqa: F401  (registers the system checks)
            services,
        )

        task_cancelled.connect(services.on_task_cancelled, dispatch_uid="pages_cancelled")
