"""Flower never listens outside localhost without authentication, however it is started.

Real Flower processes, started from a directory without flowerconfig.py (so only the guard in
operations/flower_guard.py stands between Flower and its own default of every interface).
"""

from __future__ import annotations

import base64
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from operations.embedded_redis import free_port
from operations.flower_guard import FlowerExposed, is_loopback, listen_address
from operations.testing import (
    ManagedProcess,
    celery_argv,
    listening_addresses,
    outside_addresses,
    wait_for,
)

BIN = Path(sys.executable).parent
# Straight to the address asked for, whatever proxy the environment names.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# The decision itself ------------------------------------------------------------------------


def test_no_address_means_loopback() -> None:
    assert listen_address("", None, "") == "127.0.0.1"
    assert listen_address(None, None, None) == "127.0.0.1"


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_authentication(address: str) -> None:
    assert is_loopback(address)
    assert listen_address(address, None, "") == address


@pytest.mark.parametrize(
    "address", ["0.0.0.0", "::", "192.0.2.10", "10.0.0.5", "fe80::1", "flower.invalid"]
)
def test_outside_localhost_without_authentication_is_refused(address: str) -> None:
    assert not is_loopback(address)
    # An entry without a user or a password lets in whoever sends just that (curl -u :).
    weak = ([":"], ["admin:"], [":pw"], ["ops:long-password", ":"])
    for basic_auth in (None, [], [""], *weak):
        with pytest.raises(FlowerExposed) as refusal:
            listen_address(address, basic_auth, "")
        message = str(refusal.value)
        for name in ("FLOWER_BASIC_AUTH", "--basic-auth", "FLOWER_ADDRESS", repr(address)):
            assert name in message
    # Even beside OAuth: Flower asks for the basic login first when one is set.
    with pytest.raises(FlowerExposed):
        listen_address(address, [":"], r".*@example\.com")


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.0.2.10"])
def test_outside_localhost_with_authentication_is_allowed(address: str) -> None:
    assert listen_address(address, ["ops:long-password"], "") == address
    assert listen_address(address, None, r".*@example\.com") == address


# Real processes -----------------------------------------------------------------------------


def integration(test):
    """Real Flower processes, sharing the test database and the session's Redis."""
    return pytest.mark.integration(pytest.mark.any_database(test))


def without_flower_vars(env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**{k: v for k, v in env.items() if not k.startswith("FLOWER_")}, **extra}


def status(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with NO_PROXY.open(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def assert_refused(process: ManagedProcess, port: int, address: str) -> None:
    try:
        code = process.process.wait(timeout=90)
    finally:
        process.stop()
    output = process.output
    assert code != 0, output
    assert f"Flower refused to start: it would listen on {address!r}" in output
    for name in ("FLOWER_BASIC_AUTH", "--basic-auth", "FLOWER_ADDRESS"):
        assert name in output
    assert "Visit me at" not in output
    assert listening_addresses(port) == set()
    assert status(f"http://127.0.0.1:{port}/") == 0


@integration
@pytest.mark.parametrize(
    ("how", "address"),
    [("command line", "0.0.0.0"), ("FLOWER_ADDRESS", "0.0.0.0"), ("conf file", "::")],
)
def test_celery_flower_outside_localhost_without_auth_refuses_to_start(
    subprocess_env, tmp_path, how: str, address: str
) -> None:
    port = free_port()
    env = without_flower_vars(subprocess_env)
    argv = celery_argv("flower", f"--port={port}")
    if how == "command line":
        argv.append(f"--address={address}")
    elif how == "FLOWER_ADDRESS":
        env["FLOWER_ADDRESS"] = address
    else:
        conf = tmp_path / "other_flowerconfig.py"
        conf.write_text(f"address = {address!r}\n")
        argv.append(f"--conf={conf}")
    process = ManagedProcess(argv, env, "flower", cwd=tmp_path)
    assert_refused(process, port, address)


@integration
def test_tutorial_flower_command_with_flower_address_refuses_to_start(
    subprocess_env, tmp_path
) -> None:
    port = free_port()
    env = without_flower_vars(subprocess_env, FLOWER_ADDRESS="0.0.0.0")
    argv = [str(BIN / "flower"), "-A", "myproject", f"--port={port}"]
    process = ManagedProcess(argv, env, "flower", cwd=tmp_path)
    assert_refused(process, port, "0.0.0.0")


@integration
def test_flower_without_address_outside_the_repo_listens_on_loopback_only(
    subprocess_env, tmp_path
) -> None:
    port = free_port()
    argv = [str(BIN / "flower"), "-A", "myproject", f"--port={port}"]
    process = ManagedProcess(argv, without_flower_vars(subprocess_env), "flower", cwd=tmp_path)
    try:
        process.wait_for_output(f"Visit me at http://127.0.0.1:{port}", timeout=90)
        wait_for(lambda: listening_addresses(port), timeout=30)
        assert listening_addresses(port) == {"127.0.0.1"}
        assert status(f"http://127.0.0.1:{port}/") == 200
        for address in outside_addresses():
            assert status(f"http://{address}:{port}/") == 0, address
    finally:
        process.stop()


@integration
def test_flower_with_basic_auth_may_listen_on_all_interfaces(subprocess_env, tmp_path) -> None:
    port = free_port()
    env = without_flower_vars(subprocess_env, FLOWER_BASIC_AUTH="ops:guard-pass")
    argv = celery_argv("flower", "--address=0.0.0.0", f"--port={port}")
    process = ManagedProcess(argv, env, "flower", cwd=tmp_path)
    try:
        wait_for(lambda: status(f"http://127.0.0.1:{port}/") == 401, timeout=90)
        assert listening_addresses(port) == {"0.0.0.0"}
        assert status(f"http://127.0.0.1:{port}/", "ops:guard-pass") == 200
        assert status(f"http://127.0.0.1:{port}/tasks", "ops:wrong") == 401
        # Flower's own /metrics (every task and worker name) asks for the same login.
        assert status(f"http://127.0.0.1:{port}/metrics") == 401
        assert status(f"http://127.0.0.1:{port}/metrics", "ops:wrong") == 401
        assert status(f"http://127.0.0.1:{port}/metrics", "ops:guard-pass") == 200
        assert status(f"http://127.0.0.1:{port}/healthcheck") == 200
        for address in outside_addresses():
            assert status(f"http://{address}:{port}/") == 401, address
    finally:
        process.stop()


@integration
def test_tutorial_order_of_arguments_anywhere_runs_the_projects_app_on_loopback(
    subprocess_env, tmp_path
) -> None:
    # -A after the sub-command, which Celery 5 itself ignores, from a directory without
    # flowerconfig.py: the project's Celery plugin puts it first (operations/celery_plugin.py).
    port = free_port()
    argv = [str(BIN / "celery"), "flower", "-A", "myproject", f"--port={port}"]
    process = ManagedProcess(argv, without_flower_vars(subprocess_env), "flower", cwd=tmp_path)
    try:
        process.wait_for_output(f"Visit me at http://127.0.0.1:{port}", timeout=90)
        wait_for(lambda: listening_addresses(port), timeout=30)
        assert listening_addresses(port) == {"127.0.0.1"}
        # The project's broker (the session's Redis), not Celery's default amqp://.
        broker_port = subprocess_env["CELERY_BROKER_URL"].rsplit(":", 1)[1].split("/")[0]
        process.wait_for_output(f"127.0.0.1:{broker_port}/", timeout=30)
    finally:
        process.stop()
    refused_port = free_port()
    argv = [str(BIN / "celery"), "flower", "-A", "myproject", "--address=0.0.0.0"]
    process = ManagedProcess(
        [*argv, f"--port={refused_port}"],
        without_flower_vars(subprocess_env),
        "flower",
        cwd=tmp_path,
    )
    assert_refused(process, refused_port, "0.0.0.0")


@integration
def test_tutorial_order_of_arguments_in_the_repo_root_refuses_to_start(subprocess_env) -> None:
    port = free_port()
    argv = [str(BIN / "celery"), "flower", "-A", "myproject", "--address=0.0.0.0", f"--port={port}"]
    process = ManagedProcess(argv, without_flower_vars(subprocess_env), "flower")
    assert_refused(process, port, "0.0.0.0")
