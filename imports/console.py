"""Imports on the task console's launch list: re-process a failed file by its id."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from taskconsole import registry

from .models import ImportFile
from .tasks import reprocess_import_file

REPROCESS_PERMISSION = "imports.change_importfile"


class ReprocessFileArgs(BaseModel):
    file_id: int = Field(
        title=gettext_lazy("Imported file"),
        description=gettext_lazy("The id of the failed file to process again."),
        ge=1,
    )

    @model_validator(mode="before")
    @classmethod
    def _may_reprocess(cls, data: Any) -> Any:
        # The admin's action asks for this permission; the console asks for it too.
        registry.require_permission(
            REPROCESS_PERMISSION, _("You may not re-process imported files.")
        )
        return data

    @field_validator("file_id")
    @classmethod
    def _failed_file(cls, value: int) -> int:
        status = ImportFile.objects.filter(pk=value).values_list("status", flat=True).first()
        if status is None:
            raise PydanticCustomError(
                "not_found", _("There is no imported file with id %(id)s.") % {"id": value}
            )
        if status != ImportFile.Status.FAILED:
            raise PydanticCustomError(
                "not_failed",
                _("Only a failed file can be re-processed; this one is %(status)s.")
                % {"status": ImportFile.Status(status).label},
            )
        return value


registry.register(
    reprocess_import_file,
    schema=ReprocessFileArgs,
    label=gettext_lazy("Re-process a failed imported file"),
    description=gettext_lazy(
        "Processes the stored file again from the start on the heavy_tasks queue, as the "
        "admin's action does. Needs the permission to change imported files."
    ),
)
