"""devstack's decisions, without starting processes: which broker, which worker pool."""

from __future__ import annotations

import os
import socket
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from operations.devstack import Stack
from operations.embedded_redis import free_port
from operations.management.commands import devstack


class RecordingStack:
    def __init__(self) -> None:
        self.started: dict[str, list[str]] = {}

    def start(self, name: str, argv: list[str], ready_line: str = ""):
        self.started[name] = argv
        self.ready_lines = {**getattr(self, "ready_lines", {}), name: ready_line}
        return name

    def wait_ready(self, service: str, timeout: float) -> bool:
        # Flower is started only after the worker has been waited for.
        assert "flower" not in self.started
        self.waited = service
        return True


def command() -> devstack.Command:
    cmd = devstack.Command(stdout=StringIO())
    return cmd


def test_a_broker_from_the_environment_is_used_as_is(
    monkeypatch: pytest.MonkeyPatch, broker_url: str, tmp_path: Path
) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", broker_url)
    monkeypatch.setattr(devstack.settings, "CELERY_BROKER_URL", broker_url)
    stack, env = RecordingStack(), {}
    cmd = command()
    cmd.start_broker(stack, env, redis_port=None, state_dir=tmp_path)
    assert stack.started == {}
    assert "Using the broker from CELERY_BROKER_URL" in cmd.stdout.getvalue()


def test_a_broker_from_the_environment_that_does_not_answer_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    monkeypatch.setattr(devstack.settings, "CELERY_BROKER_URL", url)
    with pytest.raises(CommandError, match=r"nothing answers at 127\.0\.0\.1"):
        command().start_broker(RecordingStack(), {}, redis_port=None, state_dir=tmp_path)


def test_a_redis_already_listening_is_reused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CELERY_BROKER_URL")
    stack, env = RecordingStack(), {}
    cmd = command()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        cmd.start_broker(stack, env, redis_port=port, state_dir=tmp_path)
    assert stack.started == {}
    assert env["CELERY_BROKER_URL"] == f"redis://127.0.0.1:{port}/0"


@pytest.mark.parametrize(("windows", "solo"), [(True, True), (False, False)])
def test_the_worker_uses_the_solo_pool_on_windows(
    monkeypatch: pytest.MonkeyPatch, windows: bool, solo: bool
) -> None:
    monkeypatch.setattr(devstack, "WINDOWS", windows)
    stack = RecordingStack()
    command().start_processes(stack, {"host": "127.0.0.1", "port": 8000, "flower_port": 5555})
    assert set(stack.started) == {"web", "worker", "beat", "flower"}
    assert ("--pool=solo" in stack.started["worker"]) is solo
    assert stack.started["worker"][-2:] == ["-Q", "default,heavy_tasks"] or solo
    assert "--address=127.0.0.1" in stack.started["flower"]
    assert stack.waited == "worker"
    assert stack.ready_lines["worker"] == " ready."


def test_wait_ready_sees_the_line_or_the_process_ending(tmp_path: Path) -> None:
    stack = Stack(env=dict(os.environ), cwd=tmp_path, write=lambda line: None)
    script = "import time; print('celery@x ready.', flush=True); time.sleep(30)"
    ready = stack.start("ready", [sys.executable, "-c", script], ready_line=" ready.")
    dies = stack.start("dies", [sys.executable, "-c", "pass"], ready_line=" ready.")
    try:
        assert stack.wait_ready(ready, timeout=30) is True
        assert stack.wait_ready(dies, timeout=30) is False
    finally:
        stack.stop()


@pytest.mark.parametrize("value", ["99999", "0", "-1", "http"])
def test_a_port_that_is_not_a_port_is_refused_before_anything_starts(value: str) -> None:
    from django.core.management import call_command

    with pytest.raises(CommandError, match=r"is not a port number \(1-65535\)"):
        call_command("devstack", "--port", value)


def test_a_port_in_use_is_named_with_the_way_out_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError) as refused:
            devstack.ensure_free("127.0.0.1", port, "The web server")
    message = str(refused.value)
    assert f"The web server needs 127.0.0.1:{port}, which is in use" in message
    assert "devstack --port 8001 --flower-port 5556" in message
    devstack.ensure_free("127.0.0.1", port, "The web server")  # free again


@pytest.mark.django_db
def test_the_chosen_admin_password_is_set_on_an_admin_made_before(monkeypatch, settings) -> None:
    from django.contrib.auth import get_user_model

    settings.DEBUG = True
    monkeypatch.setattr(devstack, "call_command", lambda *a, **k: None)
    User = get_user_model()
    User.objects.create_superuser("admin", "admin@example.com", "admin")
    monkeypatch.setenv("DEVSTACK_ADMIN_PASSWORD", "secret2")
    assert command().setup() == "user 'admin', password 'secret2'"
    assert User.objects.get(username="admin").check_password("secret2")
    # Without the variable, a password changed in the admin is kept, and the banner says so.
    monkeypatch.delenv("DEVSTACK_ADMIN_PASSWORD")
    assert "with the password you changed it to" in command().setup()
    assert User.objects.get(username="admin").check_password("secret2")
