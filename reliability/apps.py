from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReliabilityConfig(AppConfig):
    name = "reliability"
    verbose_name = _("Reliability")

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
