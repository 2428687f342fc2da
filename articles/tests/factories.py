"""Plain factory functions: every test builds the rows it needs, with defaults for the rest."""

from __future__ import annotations

import itertools

from django.contrib.auth.models import Permission, User

from articles.models import Abbreviation, Article

_numbers = itertools.count(1)


def make_user(*perms: str, **fields: object) -> User:
    """A user holding the given permissions, named like "articles.add_article"."""
    number = next(_numbers)
    user = User.objects.create_user(username=f"writer{number}", password="pw", **fields)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def make_article(**fields: object) -> Article:
    fields.setdefault("title", f"Article {next(_numbers)}")
    fields.setdefault("body", "MyCorp ships on Monday.")
    return Article.objects.create(**fields)


def make_abbreviation(
    short_form: str = "MyCorp", expansion: str = "My Corporation"
) -> Abbreviation:
    return Abbreviation.objects.create(short_form=short_form, expansion=expansion)
