from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PagesConfig(AppConfig):
    name = "pages"
    verbose_name = _("Pages")

    def ready(self) -> None:
        from taskconsole.signals import when_cancelled

        from . import (
            checks,  # noqa: F401  (registers the system checks)
            services,
        )

        steps = [name for _field, name in services.CHAIN_STEPS]
        when_cancelled(steps, services.record_cancelled, dispatch_uid="pages_cancelled")
