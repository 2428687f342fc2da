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
        longest = ApiToken._meta.get_field("name").max_length
        if len(name) > longest:
            # SQLite would keep it whole, PostgreSQL refuse it with a driver's error.
            raise CommandError(f"--name is {len(name)} characters long; at most {longest}.")
        _token, key = ApiToken.issue(user, name=name)
        self.stdout.write(key)
