from django.contrib import admin
from django.utils.translation import gettext_lazy
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from .models import Heartbeat


@admin.register(Heartbeat)
class HeartbeatAdmin(admin.ModelAdmin):
    list_display = ["name", "beat_at"]


# django-celery-beat's admin shows a few labels it never passes through gettext: the plain
# verbose_name of PeriodicTask.task, and columns named after a property or method (Django's
# pretty_name). Translatable here, with the same English; their Chinese is in the hand-kept
# locale_vendor/ catalog. The msgids go through a variable so that makemessages leaves them
# out of the project's own catalog.
BEAT_LABELS = {
    "task": "Task Name",
    "human_readable": "Human readable",
    "scheduler": "Scheduler",
    "crontab_translation": "Crontab translation",
}


def _label(name: str):
    return gettext_lazy(BEAT_LABELS[name])


PeriodicTask._meta.get_field("task").verbose_name = _label("task")
CrontabSchedule.human_readable.fget.short_description = _label("human_readable")
PeriodicTask.scheduler.fget.short_description = _label("scheduler")
PeriodicTaskAdmin.crontab_translation.short_description = _label("crontab_translation")
