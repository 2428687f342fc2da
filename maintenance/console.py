"""Maintenance on the task console's launch list: run a job now, as the page's buttons do."""

from __future__ import annotations

from typing import Any, Literal

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from pydantic import BaseModel, Field, model_validator

from taskconsole import registry

from .models import Job
from .tasks import backup_database, clear_expired, prune_results, run_job_now

RUN_PERMISSION = "maintenance.run_maintenance"
# A Literal of the job names, not the Job enum: an enum becomes a $ref in the JSON schema and
# the field's own (translated) title is lost on the console's form.
JobName = Literal[tuple(Job.values)]


class RunJobArgs(BaseModel):
    job: JobName = Field(  # type: ignore[valid-type]
        title=gettext_lazy("Job"),
        description=gettext_lazy(
            "clear_expired: clear expired sessions and cache entries; backup_database: back "
            "up the database; prune_results: prune old task results and task console records."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _may_run(cls, data: Any) -> Any:
        # The console's launch permission is not enough: the page asks for this one.
        registry.require_permission(RUN_PERMISSION, _("You may not start maintenance jobs."))
        return data


# The jobs' own tasks, which their schedules run, are not on the launch list: a periodic task's
# "run now" asks the same permission as the button on the maintenance page.
for task in (clear_expired, backup_database, prune_results):
    registry.require_to_run(
        task, RUN_PERMISSION, gettext_lazy("You may not start maintenance jobs.")
    )

registry.register(
    run_job_now,
    schema=RunJobArgs,
    label=gettext_lazy("Run a maintenance job now"),
    description=gettext_lazy(
        "Queues a run of the job, recorded on the maintenance page, as its buttons do. Needs "
        "the permission to start maintenance jobs."
    ),
)
