from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TutorialAppConfig(AppConfig):
    """The tutorial's `app`: it keeps its name because the tutorial refers to it."""

    name = "app"
    verbose_name = _("Tutorial examples")
