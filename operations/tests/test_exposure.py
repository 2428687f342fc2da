"""The embedded Redis and the tutorial's Flower listen on loopback only, never on the network."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from operations import embedded_redis
from operations.testing import ManagedProcess, listening_addresses, outside_addresses, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.any_database]


def refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return False
    except OSError:
        return True


def test_embedded_redis_binds_loopback_only(tmp_path) -> None:
    port = embedded_redis.free_port()
    server = embedded_redis.start(port, tmp_path, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        assert client.ping()
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert listening_addresses(port, ("tcp",)) == {"127.0.0.1"}
        for address in outside_addresses():
            assert refused(address, port), address
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_tutorial_flower_binds_loopback_only(subprocess_env) -> None:
    port = embedded_redis.free_port()
    flower = str(Path(sys.executable).with_name("flower"))
    env = {k: v for k, v in subprocess_env.items() if not k.startswith("FLOWER_")}
    process = ManagedProcess([flower, "-A", "myproject", f"--port={port}"], env, "flower")
    try:
        wait_for(lambda: not refused("127.0.0.1", port), timeout=60)
        assert listening_addresses(port, ("tcp",)) == {"127.0.0.1"}
        for address in outside_addresses():
            assert refused(address, port), address
    finally:
        process.stop()
