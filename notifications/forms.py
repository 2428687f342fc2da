from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from .models import Notification

# A form posts at most DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default), which is about this many
# addresses; a longer list belongs in a bulk import, not a text box.
MAX_RECIPIENTS = 50_000
# Past this many bad lines, listing more would only bury the first ones.
MAX_REPORTED_ERRORS = 20
# The longest address SMTP can carry (RFC 5321, 4.5.3.1.3).
MAX_EMAIL_LENGTH = 254


def normalize_email(address: str) -> str:
    """Lower-case the domain, which is case-insensitive; the local part is left as typed."""
    local, _at, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def parse_recipients(text: str) -> list[str]:
    """Turn one-address-per-line text into a list of unique addresses, in the order typed.

    Every bad line is reported with its line number, so a person can fix them all at once.
    Duplicates (ignoring case) are dropped rather than refused: the recipient gets one email.
    """
    recipients: dict[str, str] = {}
    errors: list[ValidationError] = []
    bad_lines = 0
    for number, line in enumerate(text.splitlines(), start=1):
        address = line.strip()
        if not address:
            continue
        try:
            if len(address) > MAX_EMAIL_LENGTH:
                raise ValidationError("too long")
            validate_email(address)
        except ValidationError:
            bad_lines += 1
            if bad_lines <= MAX_REPORTED_ERRORS:
                errors.append(
                    ValidationError(
                        _("Line %(line)d: “%(value)s” is not a valid email address."),
                        code="invalid_recipient",
                        params={"line": number, "value": address[:100]},
                    )
                )
            continue
        address = normalize_email(address)
        recipients.setdefault(address.lower(), address)
    if bad_lines > MAX_REPORTED_ERRORS:
        more = bad_lines - MAX_REPORTED_ERRORS
        errors.append(
            ValidationError(
                ngettext_lazy(
                    "… and %(count)d more invalid line.",
                    "… and %(count)d more invalid lines.",
                    "count",
                ),
                code="invalid_recipient",
                params={"count": more},
            )
        )
    if errors:
        raise ValidationError(errors)
    if not recipients:
        raise ValidationError(_("Enter at least one email address."), code="required")
    if len(recipients) > MAX_RECIPIENTS:
        raise ValidationError(
            _("At most %(max)d recipients at a time; this list has %(count)d."),
            code="too_many",
            params={"max": MAX_RECIPIENTS, "count": len(recipients)},
        )
    return list(recipients.values())


class RecipientsField(forms.CharField):
    """A textarea of email addresses, one per line, cleaned to a list of unique addresses."""

    widget = forms.Textarea(attrs={"rows": 10, "cols": 60, "spellcheck": "false"})

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("label", _("Recipients"))
        kwargs.setdefault("help_text", _("One email address per line."))
        kwargs.setdefault("strip", False)
        super().__init__(**kwargs)

    def clean(self, value: Any) -> list[str]:
        text = super().clean(value)
        return parse_recipients(text)


class ComposeForm(forms.ModelForm):
    recipients = RecipientsField()

    class Meta:
        model = Notification
        fields = ["subject", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 10, "cols": 60})}
