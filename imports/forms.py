from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _

from .validators import accepted_extensions, validate_upload

# Columns a product CSV must have (in any order, case-insensitive); see the upload page.
PRODUCT_COLUMNS = ("sku", "name", "price", "stock")
# PositiveIntegerField's range on every database we support.
MAX_STOCK = 2_147_483_647


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A file field that takes several files; cleans to a list of UploadedFile.

    The files are not validated one by one here: the form does that, so that one bad file is
    reported without refusing the others.
    """

    widget = MultipleFileInput

    def clean(self, data, initial=None) -> list[UploadedFile]:
        if not isinstance(data, list | tuple):
            data = [data]
        files = [upload for upload in data if upload]
        if not files and self.required:
            raise ValidationError(self.error_messages["required"], code="required")
        return files


@dataclass(frozen=True)
class AcceptedFile:
    upload: UploadedFile
    kind: str


@dataclass(frozen=True)
class RejectedFile:
    name: str
    reason: str


class UploadForm(forms.Form):
    files = MultipleFileField(
        label=_("Files"),
        # Checked in clean_files, which also knows about files the upload handler refused.
        required=False,
        widget=MultipleFileInput(attrs={"accept": ",".join(accepted_extensions())}),
    )

    def __init__(self, *args, rejected: list[RejectedFile] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: Files refused before the form saw them (the upload handler's size limit).
        self.rejected: list[RejectedFile] = list(rejected or [])
        self.accepted: list[AcceptedFile] = []

    def clean_files(self) -> list[AcceptedFile]:
        if not self.cleaned_data["files"] and not self.rejected:
            raise ValidationError(_("Choose at least one file."), code="required")
        for upload in self.cleaned_data["files"]:
            try:
                kind = validate_upload(upload)
            except ValidationError as exc:
                self.rejected.append(RejectedFile(upload.name or "", " ".join(exc.messages)))
            else:
                self.accepted.append(AcceptedFile(upload, kind))
        if not self.accepted:
            raise ValidationError(_("No file was accepted."), code="none_accepted")
        return self.accepted


class ProductRowForm(forms.Form):
    """One CSV row: the worker validates each row with this form."""

    sku = forms.CharField(
        max_length=64,
        validators=[
            RegexValidator(
                r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
                _("Use letters, digits, dots, dashes, slashes and underscores only."),
            )
        ],
    )
    name = forms.CharField(max_length=200)
    price = forms.DecimalField(max_digits=10, decimal_places=2, min_value=0)
    stock = forms.IntegerField(min_value=0, max_value=MAX_STOCK)
