"""The tutorial's Flower command, `flower -A myproject --port=5555`, with basic auth."""

from __future__ import annotations

import base64
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from operations.embedded_redis import free_port
from operations.testing import ManagedProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.any_database]


def status(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def test_flower_command_of_the_tutorial_starts_flower_with_auth(subprocess_env) -> None:
    port = free_port()
    flower = str(Path(sys.executable).with_name("flower"))
    env = {**subprocess_env, "FLOWER_BASIC_AUTH": "admin:flower-pass"}
    process = ManagedProcess([flower, "-A", "myproject", f"--port={port}"], env, "flower")
    try:
        wait_for(lambda: status(f"http://127.0.0.1:{port}/") == 401, timeout=60)
        assert status(f"http://127.0.0.1:{port}/", "admin:flower-pass") == 200
        assert status(f"http://127.0.0.1:{port}/", "admin:wrong") == 401
        # flowerconfig.py keeps it on localhost unless FLOWER_ADDRESS says otherwise.
        process.wait_for_output(f"Visit me at http://127.0.0.1:{port}", timeout=30)
    finally:
        process.stop()
