"""The console as a reusable app: built into a wheel, installed into another Django project.

The other project (tests/elsewhere: `shop` with an `orders` app) never sees this repository's
code: the wheel is installed into a directory of its own, and the project's processes run
from a copy of it. Its worker is a real Celery worker on the test broker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from operations.testing import ManagedProcess

# The other project has its own SQLite database, whichever database this one uses.
pytestmark = [pytest.mark.integration, pytest.mark.any_database]

SOURCE = Path(__file__).resolve().parents[1]
ELSEWHERE = Path(__file__).resolve().parent / "elsewhere"


def pip(*argv: str) -> None:
    quiet = ("--quiet", "--no-deps", "--disable-pip-version-check")
    subprocess.run([sys.executable, "-m", "pip", *argv, *quiet], check=True, capture_output=True)


def build_wheel(into: Path) -> Path:
    # From a copy: a build writes build/ and *.egg-info next to its pyproject.toml.
    source = into / "source" / "taskconsole"
    shutil.copytree(
        SOURCE, source, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.pyc", "build")
    )
    pip("wheel", "--no-build-isolation", "-w", str(into / "dist"), str(source))
    (wheel,) = (into / "dist").glob("django_taskconsole-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_holds_the_templates_translations_and_migrations_but_not_the_tests(
    wheel: Path,
) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "taskconsole/templates/taskconsole/detail.html" in names
    assert "taskconsole/locale/zh_Hans/LC_MESSAGES/django.mo" in names
    assert "taskconsole/migrations/0001_initial.py" in names
    assert "taskconsole/management/commands/taskconsole_token.py" in names
    assert not [n for n in names if n.startswith("taskconsole/tests/")]
    assert not [n for n in names if n.endswith("pyproject.toml")]


def test_another_project_installs_the_wheel_and_runs_a_task_from_its_console(
    wheel: Path, broker_url: str, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    pip("install", "--target", str(site), str(wheel))
    project = tmp_path / "project"
    shutil.copytree(ELSEWHERE, project, ignore=shutil.ignore_patterns("__pycache__"))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "CELERY_", "DATABASE_", "PYTHON"))
    }
    env |= {
        "PYTHONPATH": f"{site}{os.pathsep}{project}",
        "DJANGO_SETTINGS_MODULE": "shop.settings",
        "CELERY_BROKER_URL": broker_url,
        "SHOP_QUEUE": f"shop-{uuid.uuid4().hex[:8]}",
        "PYTHONUNBUFFERED": "1",
    }

    def django(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *argv], cwd=project, env=env, capture_output=True, text=True
        )

    migrated = django("-m", "django", "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    assert "Applying taskconsole.0001_initial... OK" in migrated.stdout
    checked = django("-m", "django", "check")
    assert checked.returncode == 0, checked.stderr
    # Without django-celery-beat the console says what its periodic page is missing.
    assert "taskconsole.W001" in checked.stderr + checked.stdout

    worker = ManagedProcess(
        [
            *(sys.executable, "-m", "celery", "-A", "shop", "worker", "-l", "info", "-P", "solo"),
            *("-Q", env["SHOP_QUEUE"], "--without-mingle", "--without-gossip", "-n", "shop@%h"),
        ],
        env,
        "shop worker",
        cwd=project,
    )
    try:
        worker.wait_for_output("ready.")
        ran = django("check_console.py", "30")
    finally:
        worker.discard()
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout.strip().splitlines()[-1])

    assert Path(seen["taskconsole"]).is_relative_to(site)
    assert seen["pages"] == [200, 200]
    assert seen["english"]
    assert seen["chinese"]
    assert seen["periodic"] == [200, {"results": []}, 404]
    assert seen["launch"][0] == 201
    task = seen["task"]
    assert (task["name"], task["status"], task["kwargs"]) == (
        "orders.tasks.total",
        "SUCCESS",
        {"a": 2, "b": 3},
    )
    assert task["result"] == "5"
    assert (task["origin"], task["owner"]) == ("console", "owner")
    assert task["worker"].startswith("shop@")
    assert "orders.tasks.total[" in worker.output
