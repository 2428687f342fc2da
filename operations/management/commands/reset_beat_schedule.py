from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _

from operations.schedules import reset_last_run


class Command(BaseCommand):
    help = (
        "After a change of TIME_ZONE: clear last_run_at on every periodic task and tell beat "
        "that the schedule changed (the tutorial's PeriodicTask.objects.update(last_run_at=None))."
    )

    def handle(self, *args, **options) -> None:
        count = reset_last_run()
        self.stdout.write(
            _(
                "Cleared last_run_at on %(count)d periodic task(s) and marked the schedule as "
                "changed; a running beat reloads it within a few seconds."
            )
            % {"count": count}
        )
