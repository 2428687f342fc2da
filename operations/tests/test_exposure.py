"""The embedded Redis and the tutorial's Flower listen on loopback only, never on the network."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from operations import embedded_redis
from operations.testing import ManagedProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.any_database]


def outside_addresses() -> list[str]:
    """This machine's own non-loopback IPv4 addresses (empty on a machine without a network)."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [a for a in out.stdout.split() if "." in a and not a.startswith("127.")]


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on port, read from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _colon, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


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
        assert listening_addresses(port) == {"127.0.0.1"}
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
        assert listening_addresses(port) == {"127.0.0.1"}
        for address in outside_addresses():
            assert refused(address, port), address
    finally:
        process.stop()
