from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.utils.translation import get_language, gettext, gettext_lazy, ngettext
from django_celery_beat.admin import (
    CrontabScheduleAdmin,
    IntervalScheduleAdmin,
    PeriodicTaskAdmin,
    PeriodicTaskForm,
)
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from django_celery_results.models import ChordCounter

from . import schedule_checks
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
    # django-celery-results' ChordCounter has no verbose_name: Django makes one of the class's.
    "chord_counter": "chord counter",
    "chord_counters": "chord counters",
}


def _label(name: str):
    return gettext_lazy(BEAT_LABELS[name])


PeriodicTask._meta.get_field("task").verbose_name = _label("task")
CrontabSchedule.human_readable.fget.short_description = _label("human_readable")
PeriodicTask.scheduler.fget.short_description = _label("scheduler")
PeriodicTaskAdmin.crontab_translation.short_description = _label("crontab_translation")
ChordCounter._meta.verbose_name = _label("chord_counter")
ChordCounter._meta.verbose_name_plural = _label("chord_counters")


# What beat cannot run is refused here, with our own translated messages (see
# schedule_checks.py): a crontab field Celery does not parse (django-celery-beat's validators
# use python-crontab, whose rules and English messages differ from Celery's), a crontab that
# never runs, an interval too long for a datetime, args/kwargs/headers of the wrong JSON shape,
# a task name nobody registered. Beat also skips such a row when one reaches the table another
# way (operations/beat.py).

_original_human_readable = CrontabSchedule.human_readable.fget


def _safe_human_readable(self: CrontabSchedule) -> str:
    """The crontab in words, in the reader's language, as the task console says it.

    django-celery-beat's own description is English only (the admin's Chinese pages showed
    "Every minute"), and its describer raises (IndexError, ValueError, …) on some values Celery
    refuses: the admin shows this property on the crontab form, its list and every periodic
    task's form, so one bad row made all of them answer 500. The bare expression is the last
    resort.
    """
    from taskconsole.crontab_words import describe_crontab, is_zh

    language = get_language()
    try:
        words = describe_crontab(
            self.minute,
            self.hour,
            self.day_of_week,
            self.day_of_month,
            self.month_of_year,
            language,
        )
    except Exception:
        try:
            return _original_human_readable(self)
        except Exception:
            return str(self)
    return f"{words}（{self.timezone}）" if is_zh(language) else f"{words} ({self.timezone})"


_safe_human_readable.short_description = _label("human_readable")
CrontabSchedule.human_readable = property(_safe_human_readable)


class CrontabScheduleForm(forms.ModelForm):
    class Meta:
        model = CrontabSchedule
        fields = ["minute", "hour", "day_of_month", "month_of_year", "day_of_week", "timezone"]

    def _clean_crontab_field(self, field: str) -> str:
        value = self.cleaned_data[field]
        if error := schedule_checks.crontab_field_error(field, value):
            raise forms.ValidationError(error, code="invalid_crontab")
        return value

    def clean_minute(self) -> str:
        return self._clean_crontab_field("minute")

    def clean_hour(self) -> str:
        return self._clean_crontab_field("hour")

    def clean_day_of_month(self) -> str:
        return self._clean_crontab_field("day_of_month")

    def clean_month_of_year(self) -> str:
        return self._clean_crontab_field("month_of_year")

    def clean_day_of_week(self) -> str:
        return self._clean_crontab_field("day_of_week")

    def clean(self) -> dict:
        data = super().clean()
        if "day_of_month" in data and "month_of_year" in data:
            error = schedule_checks.crontab_date_error(data["day_of_month"], data["month_of_year"])
            if error:
                raise forms.ValidationError(error, code="crontab_never_runs")
        return data

    def _get_validation_exclusions(self):
        # The model's validators (python-crontab's, English only, stricter than Celery in places
        # and looser in others) would add a second, untranslated error: the clean_* methods
        # above check these fields the way beat reads them.
        return {*super()._get_validation_exclusions(), *schedule_checks.CRONTAB_FIELDS}


class IntervalScheduleForm(forms.ModelForm):
    class Meta:
        model = IntervalSchedule
        fields = ["every", "period"]

    def clean(self) -> dict:
        data = super().clean()
        error = schedule_checks.interval_error(data.get("every"), data.get("period"))
        if error:
            self.add_error("every", forms.ValidationError(error, code="interval_too_long"))
        return data


WORKER_ONLY_LABEL = gettext_lazy("Registered only in workers")


class CheckedPeriodicTaskForm(PeriodicTaskForm):
    """django-celery-beat's form, refusing what beat or a worker could never run.

    The task name must be one this site's Celery app registered (after autodiscovery). The
    "Task (custom)" field stays for tasks only workers import (another code base, a task
    module the web process does not load): such a name is saved when "Registered only in
    workers" is ticked, a deliberate step a typo does not take. The box is never pre-ticked,
    so each save of an unknown name is a choice.
    """

    worker_only = forms.BooleanField(
        label=WORKER_ONLY_LABEL,
        required=False,
        help_text=gettext_lazy(
            "Tick to save a task name this site does not know because only your workers "
            "import it. Beat sends it by name; a worker that does not know it rejects it."
        ),
    )

    def _clean_shape(self, field: str) -> str:
        value = self.cleaned_data[field]
        if error := schedule_checks.json_error(field, value):
            raise forms.ValidationError(error, code="invalid_json_shape")
        return value

    def clean_args(self) -> str:
        return self._clean_shape("args")

    def clean_kwargs(self) -> str:
        return self._clean_shape("kwargs")

    def clean_headers(self) -> str:
        return self._clean_shape("headers")

    def clean(self) -> dict:
        data = super().clean()
        task = data.get("task")
        if (
            task
            and not data.get("worker_only")
            and task not in schedule_checks.registered_tasks(PeriodicTaskAdmin.celery_app)
        ):
            field = "regtask" if data.get("regtask") else "task"
            self.add_error(
                field,
                forms.ValidationError(
                    gettext(
                        "No task named “%(task)s” is registered in this site's Celery "
                        "app. Choose one under “%(registered)s”, or tick “%(confirm)s” "
                        "if only your workers know it."
                    )
                    % {
                        "task": task,
                        "registered": self.fields["regtask"].label,
                        "confirm": WORKER_ONLY_LABEL,
                    },
                    code="unregistered_task",
                ),
            )
        # A schedule row made outside this admin (the shell, a data migration) may be one beat
        # cannot use: say so on the task that would use it.
        interval = data.get("interval")
        if interval is not None:
            error = schedule_checks.interval_error(interval.every, interval.period)
            if error:
                self.add_error("interval", forms.ValidationError(error, code="interval_too_long"))
        crontab = data.get("crontab")
        if crontab is not None:
            errors = schedule_checks.crontab_errors(
                {field: getattr(crontab, field) for field in schedule_checks.CRONTAB_FIELDS}
            )
            if errors:
                self.add_error("crontab", forms.ValidationError(list(errors.values())))
        return data

    def validate_unique(self) -> None:
        # PeriodicTask.validate_unique also says "One of clocked, interval, crontab, or solar
        # must be set" (untranslated) when the schedule chosen was refused above.
        if any(field in self._errors for field in ("interval", "crontab", "solar", "clocked")):
            return
        super().validate_unique()


def _with_worker_only(fieldsets):
    out = []
    for name, options in fieldsets:
        fields = tuple(options["fields"])
        if "task" in fields and "worker_only" not in fields:
            at = fields.index("task") + 1
            fields = (*fields[:at], "worker_only", *fields[at:])
        out.append((name, {**options, "fields": fields}))
    return tuple(out)


class CheckedPeriodicTaskAdmin(PeriodicTaskAdmin):
    """django-celery-beat's admin, with its list actions asking what the console asks.

    The library's actions need nothing beyond seeing the list: a staff member who may only view
    periodic tasks could run them and switch them on and off, unaudited. Here switching needs
    the change permission and writes an audit entry per task; running one goes through the
    console's "run now" (its permission, the launch list, the app's own permission, the audit).
    """

    form = CheckedPeriodicTaskForm
    fieldsets = _with_worker_only(PeriodicTaskAdmin.fieldsets)

    @admin.action(description=gettext_lazy("Enable selected tasks"), permissions=["change"])
    def enable_tasks(self, request, queryset) -> None:
        with transaction.atomic():  # the change and its audit entries, or neither
            self._audit_switch(request, queryset.filter(enabled=False), enabled=True)
            super().enable_tasks(request, queryset)

    @admin.action(description=gettext_lazy("Disable selected tasks"), permissions=["change"])
    def disable_tasks(self, request, queryset) -> None:
        with transaction.atomic():  # the change and its audit entries, or neither
            self._audit_switch(request, queryset.filter(enabled=True), enabled=False)
            super().disable_tasks(request, queryset)

    @admin.action(
        description=gettext_lazy("Toggle activity of selected tasks"), permissions=["change"]
    )
    def toggle_tasks(self, request, queryset) -> None:
        with transaction.atomic():  # the change and its audit entries, or neither
            self._audit_switch(request, queryset.filter(enabled=True), enabled=False)
            self._audit_switch(request, queryset.filter(enabled=False), enabled=True)
            super().toggle_tasks(request, queryset)

    @admin.action(description=gettext_lazy("Run selected tasks"), permissions=["change"])
    def run_tasks(self, request, queryset) -> None:
        from taskconsole.actions import ActionError, run_now

        sent = 0
        for task in queryset.order_by("name"):
            try:
                run_now(request.user, task.pk)
            except ActionError as exc:
                self.message_user(request, f"{task.name}: {exc.message}", level=messages.ERROR)
            else:
                sent += 1
        if sent:
            self.message_user(
                request,
                ngettext(
                    "%(count)d task was queued to run now.",
                    "%(count)d tasks were queued to run now.",
                    sent,
                )
                % {"count": sent},
            )

    @staticmethod
    def _audit_switch(request, queryset, *, enabled: bool) -> None:
        from taskconsole.actions import audit
        from taskconsole.models import AuditAction

        action = AuditAction.SCHEDULE_ENABLE if enabled else AuditAction.SCHEDULE_DISABLE
        for name, task in queryset.values_list("name", "task"):
            audit(request.user, action, name, task=task)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        warning = schedule_checks.unknown_queue_warning(obj.queue, self.celery_app)
        if warning:
            self.message_user(request, warning, level=messages.WARNING)


class CheckedCrontabScheduleAdmin(CrontabScheduleAdmin):
    form = CrontabScheduleForm


class CheckedIntervalScheduleAdmin(IntervalScheduleAdmin):
    form = IntervalScheduleForm


for _model, _admin_class in (
    (PeriodicTask, CheckedPeriodicTaskAdmin),
    (CrontabSchedule, CheckedCrontabScheduleAdmin),
    (IntervalSchedule, CheckedIntervalScheduleAdmin),
):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin_class)
