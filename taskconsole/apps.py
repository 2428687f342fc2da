from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TaskConsoleConfig(AppConfig):
    name = "taskconsole"
    verbose_name = _("Task console")
