"""Data migrations of the console's tables."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("taskconsole", "0002_cancel_requested_index")]
AFTER = [("taskconsole", "0003_redact_launch_audit_arguments")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.database
def test_launch_audit_entries_of_earlier_releases_are_redacted() -> None:
    old = _migrate(BEFORE)
    AuditEntry = old.get_model("taskconsole", "AuditEntry")
    secret = AuditEntry.objects.create(
        action="launch",
        target="a",
        details={"task": "t", "kwargs": {"value": 3, "api_token": "s3cret"}},
    )
    plain = AuditEntry.objects.create(
        action="launch", target="b", details={"task": "t", "kwargs": {"value": 4}}
    )
    cancel = AuditEntry.objects.create(
        action="cancel", target="c", details={"task": "t", "password": "kept as it was"}
    )
    try:
        new = _migrate(AFTER)
    finally:
        # Back to the latest state for the tests that follow, whatever happened.
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    AuditEntry = new.get_model("taskconsole", "AuditEntry")
    assert AuditEntry.objects.get(pk=secret.pk).details == {
        "task": "t",
        "kwargs": {"value": 3, "api_token": "********"},
    }
    assert AuditEntry.objects.get(pk=plain.pk).details == {"task": "t", "kwargs": {"value": 4}}
    # Only launches stored arguments: other actions' details are not touched.
    assert AuditEntry.objects.get(pk=cancel.pk).details["password"] == "kept as it was"
