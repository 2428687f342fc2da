"""``{{ task.name|delivery_policy }}``: a task's delivery policy in words, for the console."""

from __future__ import annotations

from django import template

from reliability.delivery import policy_label

register = template.Library()


@register.filter
def delivery_policy(task_name: str) -> str:
    return policy_label(task_name)
