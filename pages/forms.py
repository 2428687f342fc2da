from __future__ import annotations

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from . import client


class PageSubmitForm(forms.Form):
    url = forms.URLField(
        label=_("URL"),
        max_length=client.MAX_URL_LENGTH,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"size": 70, "placeholder": "https://example.com/"}),
        help_text=_("An http or https address on the public internet."),
    )

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            parsed = client.validate_url(url)
            # A literal address can be judged now; host names are resolved and checked by the
            # worker, right before it connects.
            address = client.literal_address(parsed)
            if address is not None:
                client.check_address(address, allow_private=settings.PAGES_ALLOW_PRIVATE_ADDRESSES)
        except client.FetchError as exc:
            raise forms.ValidationError(exc.message, code="refused") from exc
        return url
