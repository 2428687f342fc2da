from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ArticlesConfig(AppConfig):
    name = "articles"
    verbose_name = _("Articles")

    def ready(self) -> None:
        from taskconsole.signals import task_cancelled

        from . import services

        task_cancelled.connect(services.on_task_cancelled, dispatch_uid="articles_cancelled")
