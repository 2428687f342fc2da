from __future__ import annotations

from django import forms

from .models import Article


class ArticleForm(forms.ModelForm):
    class Meta:
        model = Article
        fields = ["title", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 16, "cols": 80})}
