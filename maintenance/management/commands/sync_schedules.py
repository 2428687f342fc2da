from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _

from maintenance.schedules import sync_schedules


class Command(BaseCommand):
    help = (
        "Write the periodic schedules defined in maintenance/schedules.py into "
        "django-celery-beat's tables. Idempotent: a second run changes nothing. A schedule "
        "enabled or disabled in the admin keeps that choice unless --reset is given."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Also put each schedule's enabled flag back to the code's default.",
        )

    def handle(self, *args, **options) -> None:
        report = sync_schedules(reset=options["reset"])
        verbosity = options["verbosity"]
        if verbosity < 1:
            return
        for name in report.created:
            self.stdout.write(_("Created %(name)s") % {"name": name})
        for name, fields in report.updated.items():
            self.stdout.write(
                _("Updated %(name)s: %(fields)s") % {"name": name, "fields": ", ".join(fields)}
            )
        for name in report.deleted:
            self.stdout.write(_("Deleted %(name)s (no longer defined in code)") % {"name": name})
        if verbosity > 1:
            for name in report.unchanged:
                self.stdout.write(_("Unchanged %(name)s") % {"name": name})
        self.stdout.write(
            _(
                "Periodic schedules: %(created)d created, %(updated)d updated, %(deleted)d "
                "deleted, %(unchanged)d unchanged."
            )
            % {
                "created": len(report.created),
                "updated": len(report.updated),
                "deleted": len(report.deleted),
                "unchanged": len(report.unchanged),
            }
        )
