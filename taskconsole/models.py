"""What the console stores: one row per task, the audit trail, and API tokens."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop, pgettext_lazy
from django.utils.translation import gettext_lazy as _


class TaskStatus(models.TextChoices):
    QUEUED = "QUEUED", _("Queued")
    SCHEDULED = "SCHEDULED", _("Scheduled")
    STARTED = "STARTED", _("Started")
    PROGRESS = "PROGRESS", _("In progress")
    RETRY = "RETRY", _("Retrying")
    SUCCESS = "SUCCESS", _("Succeeded")
    FAILURE = "FAILURE", _("Failed")
    REVOKED = "REVOKED", _("Revoked")


#: States after which nothing more happens to a task.
FINISHED_STATES = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILURE, TaskStatus.REVOKED})
#: States in which a task has not started yet, so revoking it is enough to cancel it.
WAITING_STATES = frozenset({TaskStatus.QUEUED, TaskStatus.SCHEDULED, TaskStatus.RETRY})
RUNNING_STATES = frozenset({TaskStatus.STARTED, TaskStatus.PROGRESS})

#: Texts the console itself stores as a task's exception, in English, shown translated.
TERMINATED = "Terminated"
LOST = "Lost: its worker stopped while it ran, perhaps before it finished"
VANISHED = (
    "Vanished: its message left the queue without reaching a worker (purged, or lost by the broker)"
)
STORED_PREFIXES = (
    ("Not published: ", gettext_noop("Not published: %(error)s")),
    ("internal error: ", gettext_noop("Internal error: %(error)s")),
)


class Origin(models.TextChoices):
    #: Published by code that names its user (Launcher), and by signed-in requests before
    #: requests had their own origin.
    USER = "user", _("A user")
    #: Published while a request was served (TaskOwnerMiddleware): the owner is the signed-in
    #: user (none for an anonymous visitor), the detail the request's path.
    WEB = "web", _("A web request")
    CONSOLE = "console", _("The console")
    BEAT = "beat", _("Beat (periodic task)")
    TASK = "task", _("Another task")
    CODE = "code", _("Code (shell, script, command)")


class TaskRecord(models.Model):
    """One Celery task, from the moment it is published to the moment it finishes.

    Ordered and paginated by the primary key: rows are inserted when tasks are published,
    so a higher id is a later task, and keyset pagination on (filter, id) needs no count.
    """

    task_id = models.CharField(_("task id"), max_length=255, unique=True)
    name = models.CharField(_("name"), max_length=255)
    status = models.CharField(
        _("status"), max_length=16, choices=TaskStatus.choices, default=TaskStatus.QUEUED
    )
    args = models.JSONField(_("arguments"), default=list, blank=True)
    kwargs = models.JSONField(_("keyword arguments"), default=dict, blank=True)
    #: True when some argument was redacted, so the stored arguments cannot be replayed.
    redacted = models.BooleanField(_("redacted"), default=False)

    origin = models.CharField(_("launched by"), max_length=16, choices=Origin.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        # tc_owner_id (owner, id) serves every lookup by owner.
        db_index=False,
    )
    #: The periodic task's name for beat, the parent task's name for a task, else empty.
    origin_detail = models.CharField(_("launched by (detail)"), max_length=255, blank=True)

    queue = models.CharField(_("queue"), max_length=255, blank=True)
    worker = models.CharField(_("worker"), max_length=255, blank=True)
    eta = models.DateTimeField(_("ETA"), null=True, blank=True)

    created_at = models.DateTimeField(_("queued at"), default=timezone.now)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    result = models.TextField(_("result"), blank=True)
    exception = models.TextField(_("exception"), blank=True)
    traceback = models.TextField(_("traceback"), blank=True)
    retries = models.PositiveIntegerField(_("retries"), default=0)

    parent_id = models.CharField(_("parent task id"), max_length=255, blank=True)
    root_id = models.CharField(_("root task id"), max_length=255, blank=True)
    group_id = models.CharField(_("group id"), max_length=255, blank=True)
    retry_of = models.ForeignKey(
        "self",
        verbose_name=_("retry of"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="retried_as",
        db_index=False,  # tc_retry_of: only the retries
    )

    progress_current = models.BigIntegerField(_("progress"), null=True, blank=True)
    progress_total = models.BigIntegerField(_("progress total"), null=True, blank=True)
    progress_message = models.CharField(_("progress message"), max_length=255, blank=True)

    #: Set by a cancel: the durable revocation a worker checks before it runs the task.
    cancel_requested_at = models.DateTimeField(_("cancel requested at"), null=True, blank=True)

    class Meta:
        verbose_name = _("task record")
        verbose_name_plural = _("task records")
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["status", "id"], name="tc_status_id"),
            models.Index(fields=["name", "id"], name="tc_name_id"),
            models.Index(fields=["owner", "id"], name="tc_owner_id"),
            models.Index(fields=["created_at"], name="tc_created"),
            models.Index(fields=["root_id"], name="tc_root"),
            models.Index(fields=["origin_detail", "id"], name="tc_origin_detail_id"),
            # Every record is written once when published and again when it finishes, and a
            # burst writes thousands a second (taskconsole.bulk): an index holds only the rows
            # it is looked up by. Most tasks have no parent, group or retry, and a task not
            # finished is never looked up by when it finished. The queries of these columns
            # say `<> ''` or compare the column, which is what lets the database use them.
            models.Index(
                fields=["finished_at"],
                name="tc_finished_only",
                condition=models.Q(finished_at__isnull=False),
            ),
            models.Index(
                fields=["parent_id"], name="tc_parent_only", condition=~models.Q(parent_id="")
            ),
            models.Index(
                fields=["group_id"], name="tc_group_only", condition=~models.Q(group_id="")
            ),
            models.Index(
                fields=["retry_of"], name="tc_retry_of", condition=models.Q(retry_of__isnull=False)
            ),
            # Workers poll for new cancellations (capture.CancelledTasks); a partial index keeps
            # that a lookup of the few cancelled rows, not a scan of the table.
            models.Index(
                fields=["cancel_requested_at"],
                name="tc_cancel_requested",
                condition=models.Q(cancel_requested_at__isnull=False),
            ),
        ]
        permissions = [
            ("view_all_tasks", _("Can see every task, not only their own")),
            ("launch_task", _("Can launch tasks from the console")),
            ("cancel_task", _("Can cancel tasks")),
            ("change_schedule", _("Can enable, disable, run and edit periodic tasks")),
        ]

    def __str__(self) -> str:
        return f"{self.name}[{self.task_id}]"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATES

    @property
    def is_running(self) -> bool:
        return self.status in RUNNING_STATES

    @property
    def is_lost(self) -> bool:
        return self.exception == LOST

    @property
    def is_vanished(self) -> bool:
        return self.exception == VANISHED

    @property
    def exception_display(self) -> str:
        """The exception as the page shows it: what the console itself wrote, translated.

        The stored text stays English, as logs and the API give it.
        """
        text = self.exception or ""
        if text == TERMINATED:
            return gettext("Terminated")
        if text == LOST:
            return gettext("Lost: its worker stopped while it ran, perhaps before it finished")
        if text == VANISHED:
            return gettext(
                "Vanished: its message left the queue without reaching a worker (purged, or "
                "lost by the broker)"
            )
        for prefix, template in STORED_PREFIXES:
            if text.startswith(prefix):
                return gettext(template) % {"error": text[len(prefix) :]}
        return text

    @property
    def progress_percent(self) -> int | None:
        if self.status == TaskStatus.SUCCESS:
            return 100
        if not self.progress_total or self.progress_current is None:
            return None
        return max(0, min(100, int(self.progress_current * 100 / self.progress_total)))

    @property
    def runtime(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class AuditAction(models.TextChoices):
    LAUNCH = "launch", _("Launched a task")
    CANCEL = "cancel", _("Cancelled a task")
    RETRY = "retry", _("Retried a task")
    SCHEDULE_ENABLE = "schedule_enable", _("Enabled a periodic task")
    SCHEDULE_DISABLE = "schedule_disable", _("Disabled a periodic task")
    SCHEDULE_RUN = "schedule_run", _("Ran a periodic task now")
    SCHEDULE_CHANGE = "schedule_change", _("Changed a periodic task")
    SCHEDULE_DELETE = "schedule_delete", _("Deleted a periodic task")


class AuditEntry(models.Model):
    """Who did what, and when: written by every action of the console, never edited."""

    at = models.DateTimeField(_("at"), default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    action = models.CharField(_("action"), max_length=32, choices=AuditAction.choices)
    #: The task id for task actions, the periodic task's name for schedule actions.
    target = models.CharField(_("target"), max_length=255, blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True)
    #: Made with the entry, before any write: a batch written again after a COMMIT whose
    #: outcome was lost (the connection dropped during it) finds its entries already there.
    # A context of its own: Django's catalogs translate a bare "key" otherwise.
    key = models.UUIDField(
        pgettext_lazy("audit entry", "key"), unique=True, null=True, blank=True, editable=False
    )

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["user", "id"], name="tc_audit_user_id"),
            models.Index(fields=["target"], name="tc_audit_target"),
        ]

    def __str__(self) -> str:
        # The action's name in the reader's language, not its stored code.
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.user} {self.get_action_display()} {self.target}"


def _hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiToken(models.Model):
    """A per-user token for scripts. Only its hash is stored; the key is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="taskconsole_tokens",
    )
    name = models.CharField(_("name"), max_length=100, blank=True)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    key_hash = models.CharField(_("key hash"), max_length=64, editable=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, user, name: str = "") -> tuple[ApiToken, str]:
        """Create a token and return it with its key, which is never stored in clear."""
        prefix = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, prefix=prefix, key_hash=_hash_token(secret)
        )
        return token, f"{prefix}.{secret}"

    def matches(self, secret: str) -> bool:
        return secrets.compare_digest(self.key_hash, _hash_token(secret))
