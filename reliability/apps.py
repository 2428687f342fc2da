from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReliabilityConfig(AppConfig):
    name = "reliability"
    verbose_name = _("Reliability")

    def ready(self) -> None:
        from celery import current_app

        from . import checks  # noqa: F401  (registers the system checks)
        from .results import use_retrying_backend

        use_retrying_backend(current_app._get_current_object())
