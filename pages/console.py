"""Pages on the task console's launch list: fetch a URL (a PageInfo row and its chain)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from taskconsole import registry

from . import client
from .forms import PageSubmitForm
from .tasks import submit_url

SUBMIT_PERMISSION = "pages.add_pageinfo"


class SubmitUrlArgs(BaseModel):
    url: str = Field(
        title=gettext_lazy("URL"),
        description=gettext_lazy("An http or https address on the public internet."),
        min_length=1,
        max_length=client.MAX_URL_LENGTH,
    )

    @model_validator(mode="before")
    @classmethod
    def _may_submit(cls, data: Any) -> Any:
        # The console's launch permission is not enough: fetching needs what the page needs.
        registry.require_permission(SUBMIT_PERMISSION, _("You may not fetch pages."))
        return data

    @field_validator("url")
    @classmethod
    def _acceptable(cls, value: str) -> str:
        # The page's own form judges it, so the console refuses exactly what the page refuses.
        form = PageSubmitForm({"url": value})
        if not form.is_valid():
            raise PydanticCustomError("invalid_url", " ".join(form.errors["url"]))
        return form.cleaned_data["url"]


registry.register(
    submit_url,
    schema=SubmitUrlArgs,
    label=gettext_lazy("Fetch a page"),
    description=gettext_lazy(
        "Fetches the URL, reads its title, description and links, and stores them "
        "(fetch → parse → store), as the pages form does."
    ),
)
