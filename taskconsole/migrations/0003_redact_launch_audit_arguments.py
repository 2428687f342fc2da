"""Launch audit entries written before launches redacted their arguments: redact them now.

The task's record always hid secret-looking arguments; the audit entry of the same launch
stored them as given until this release.
"""

from django.db import migrations

from taskconsole.redaction import redact


def redact_launch_arguments(apps, schema_editor):
    AuditEntry = apps.get_model("taskconsole", "AuditEntry")
    changed = []
    for entry in AuditEntry.objects.filter(action="launch").only("id", "details").iterator(2000):
        details = entry.details if isinstance(entry.details, dict) else {}
        if "kwargs" not in details:
            continue
        shown, _ = redact(details["kwargs"])
        if shown != details["kwargs"]:
            entry.details = {**details, "kwargs": shown}
            changed.append(entry)
        if len(changed) >= 500:
            AuditEntry.objects.bulk_update(changed, ["details"])
            changed = []
    AuditEntry.objects.bulk_update(changed, ["details"])


class Migration(migrations.Migration):
    dependencies = [("taskconsole", "0002_cancel_requested_index")]

    operations = [
        migrations.RunPython(redact_launch_arguments, migrations.RunPython.noop, elidable=True)
    ]
