from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from operations import probes


class Command(BaseCommand):
    help = "Check that the broker, the workers, their queues and beat are working."

    def handle(self, *args, **options) -> None:
        results = probes.run_all()
        for probe in results:
            style = self.style.SUCCESS if probe.ok else self.style.ERROR
            mark = "OK  " if probe.ok else "FAIL"
            self.stdout.write(style(f"[{mark}] ") + probe.summary)
            for detail in probe.details:
                self.stdout.write(f"         . {detail}")
        failed = [p.name for p in results if not p.ok]
        if failed:
            raise CommandError(_("Not working: %(names)s") % {"names": ", ".join(failed)})
        self.stdout.write(self.style.SUCCESS(_("Redis/RabbitMQ and Celery are working.")))
