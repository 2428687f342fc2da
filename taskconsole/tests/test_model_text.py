"""How the console's models read where Django shows them by name, and what they hold."""

from __future__ import annotations

import pytest
from django.utils import translation

from taskconsole.models import AuditAction, AuditEntry

pytestmark = pytest.mark.django_db


def test_an_audit_entry_reads_its_action_in_the_readers_language(django_user_model) -> None:
    user = django_user_model.objects.create_user("operator", password="x")
    entry = AuditEntry.objects.create(user=user, action=AuditAction.CANCEL, target="t-1")
    with translation.override("en"):
        assert str(entry).endswith(" operator Cancelled a task t-1")
    with translation.override("zh-hans"):
        assert str(entry).endswith(" operator 取消了任务 t-1")


def test_a_token_name_longer_than_its_column_is_refused(django_user_model) -> None:
    from django.core.management import CommandError, call_command

    from taskconsole.models import ApiToken

    django_user_model.objects.create_user("script", password="x")
    with pytest.raises(CommandError, match="--name is 101 characters long; at most 100"):
        call_command("taskconsole_token", "script", "--name", "n" * 101)
    assert not ApiToken.objects.exists()
    call_command("taskconsole_token", "script", "--name", "n" * 100)
    assert ApiToken.objects.get().name == "n" * 100
