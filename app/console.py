"""The tutorial's tasks on the task console's launch list."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from pydantic import BaseModel, Field

from taskconsole import registry
from taskconsole.registry import CancelPolicy

from .tasks import add, crunch_numbers


class AddArgs(BaseModel):
    x: int = Field(title=_("x"), description=_("First number"))
    y: int = Field(title=_("y"), description=_("Second number"))


class CrunchArgs(BaseModel):
    n: int = Field(
        title=_("n"), description=_("Sum the squares below this number"), ge=0, le=50_000_000
    )


registry.register(
    add,
    schema=AddArgs,
    label=_("Add two numbers (the tutorial's add)"),
    description=_("Sleeps 2 seconds, then returns x + y."),
    cancel_policy=CancelPolicy.TERMINATE,
)
registry.register(
    crunch_numbers,
    schema=CrunchArgs,
    label=_("Crunch numbers (heavy_tasks queue)"),
    description=_("CPU work on the heavy_tasks queue."),
    cancel_policy=CancelPolicy.TERMINATE,
)
