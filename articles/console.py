"""Articles on the task console's launch list: expand one article's abbreviations again."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from taskconsole import registry

from .models import Article
from .tasks import expand_abbreviations

CHANGE_PERMISSION = "articles.change_article"


class ExpandAbbreviationsArgs(BaseModel):
    article_id: int = Field(
        title=gettext_lazy("Article"),
        description=gettext_lazy("The id of the article whose abbreviations to expand."),
        ge=1,
    )

    @model_validator(mode="before")
    @classmethod
    def _may_change(cls, data: Any) -> Any:
        # Expanding rewrites the body: it needs what editing the article needs.
        registry.require_permission(CHANGE_PERMISSION, _("You may not change articles."))
        return data

    @field_validator("article_id")
    @classmethod
    def _exists(cls, value: int) -> int:
        if not Article.objects.filter(pk=value).exists():
            raise PydanticCustomError(
                "not_found", _("There is no article with id %(id)s.") % {"id": value}
            )
        return value


registry.register(
    expand_abbreviations,
    schema=ExpandAbbreviationsArgs,
    label=gettext_lazy("Expand an article's abbreviations"),
    description=gettext_lazy(
        "Replaces the abbreviations in the article's body with their expansions, as saving "
        "the article does. Needs the permission to change articles."
    ),
)
