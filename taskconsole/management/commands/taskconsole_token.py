from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from taskconsole.models import ApiToken


class Command(BaseCommand):
    help = "Issue an API token for a user; the key is printed once and stored only hashed."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="")

    def handle(self, *args, username: str, name: str, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username}")
        _token, key = ApiToken.issue(user, name=name)
        self.stdout.write(key)
