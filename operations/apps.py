from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OperationsConfig(AppConfig):
    """Running the stack: devstack, celery_check, beat's heartbeat, broker fault handling."""

    name = "operations"
    verbose_name = _("Operations")
