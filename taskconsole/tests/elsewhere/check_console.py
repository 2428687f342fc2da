"""Run inside the project above: launch through the console's API, wait, print what it saw."""

import json
import sys
import time

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402

import taskconsole  # noqa: E402

user = get_user_model().objects.create_superuser("owner", "owner@example.com", "x")
client = Client()
client.force_login(user)
seen = {"taskconsole": taskconsole.__file__}

english = client.get("/console/")
chinese = client.get("/console/", headers={"accept-language": "zh-hans"})
seen["pages"] = [english.status_code, chinese.status_code]
seen["english"] = "Task console" in english.text
seen["chinese"] = "任务控制台" in chinese.text
# No django-celery-beat in this project: its page is empty, its actions find nothing.
seen["periodic"] = [
    client.get("/console/periodic/").status_code,
    client.get("/console/api/periodic/").json(),
    client.post("/console/api/periodic/1/enable/").status_code,
]

launched = client.post(
    "/console/api/launch/",
    {"task": "orders.tasks.total", "arguments": {"a": 2, "b": 3}},
    content_type="application/json",
)
seen["launch"] = [launched.status_code, launched.json()]
task_id = launched.json().get("task_id")
deadline = time.monotonic() + float(sys.argv[1] if len(sys.argv) > 1 else 30)
detail: dict = {}
while task_id and time.monotonic() < deadline:
    detail = client.get(f"/console/api/tasks/{task_id}/").json()
    if detail.get("status") in {"SUCCESS", "FAILURE"}:
        break
    time.sleep(0.1)
seen["task"] = detail
print(json.dumps(seen))
