from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ArticlesConfig(AppConfig):
    name = "articles"
    verbose_name = _("Articles")

    def ready(self) -> None:
        from taskconsole.signals import when_cancelled

        from . import services

        when_cancelled(
            [services.EXPAND_TASK], services.on_cancelled, dispatch_uid="articles_cancelled"
        )
