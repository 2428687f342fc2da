from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ImportsConfig(AppConfig):
    name = "imports"
    verbose_name = _("Imports")

    def ready(self) -> None:
        from reliability import outbox
        from taskconsole.signals import when_cancelled

        from . import services

        outbox.published.connect(services.on_outbox_published, dispatch_uid="imports_sent")
        when_cancelled(
            [services.PROCESS_TASK], services.record_cancelled, dispatch_uid="imports_cancelled"
        )
