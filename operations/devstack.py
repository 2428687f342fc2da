"""Run the whole development stack in one terminal: Redis, web, worker, beat and Flower.

Each process runs in its own process group, so Ctrl-C reaches only this supervisor, which then
stops every process it started, newest first, and kills what is left of each group (the
runserver reloader's child and the worker's pool children included).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

WINDOWS = sys.platform == "win32"
COLORS = ["\033[36m", "\033[33m", "\033[32m", "\033[35m", "\033[34m", "\033[31m"]
RESET = "\033[0m"
#: Seconds each process gets to stop even when the stack's stop_timeout is spent.
MIN_STOP_WAIT = 1.0


class StackError(RuntimeError):
    """The stack could not start, or one of its processes died."""


@dataclass
class Service:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    reader: threading.Thread | None = None
    stopping: bool = field(default=False)
    #: A line of output that says the process is ready, and whether it has been seen.
    ready_line: str = ""
    ready: threading.Event = field(default_factory=threading.Event)


class Stack:
    """Supervise a set of processes: prefix their output, stop all when one dies or on Ctrl-C."""

    def __init__(
        self,
        env: dict[str, str],
        cwd: Path,
        write: Callable[[str], None] | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        self.env = env
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self.services: list[Service] = []
        self._write = write or self._print
        self._output_gone = False
        self._lock = threading.Lock()
        self._color = sys.stdout.isatty() and not WINDOWS

    @staticmethod
    def _print(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def say(self, name: str, line: str, index: int = -1) -> None:
        width = max([len(s.name) for s in self.services] + [len(name), 6])
        label = name.rjust(width)
        if self._color and index >= 0:
            label = f"{COLORS[index % len(COLORS)]}{label}{RESET}"
        with self._lock:
            if self._output_gone:
                return
            try:
                self._write(f"{label} | {line}")
            except OSError:
                # The terminal or pipe is gone (`make run | tee log`, and Ctrl-C ended tee too):
                # the processes' output is still read, so none blocks on a full pipe while the
                # stack stops, and nothing more is written.
                self._output_gone = True

    def start(self, name: str, argv: list[str], ready_line: str = "") -> Service:
        service = Service(name, argv, ready_line=ready_line)
        self.services.append(service)
        index = len(self.services) - 1
        kwargs: dict = {}
        if WINDOWS:
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True
        with _stop_signals_deferred():
            service.process = self._popen(argv, kwargs)
        service.reader = threading.Thread(
            target=self._pump, args=(service, index), name=f"devstack-{name}", daemon=True
        )
        service.reader.start()
        return service

    def _popen(self, argv: list[str], kwargs: dict) -> subprocess.Popen:
        return subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **kwargs,
        )

    def _pump(self, service: Service, index: int) -> None:
        assert service.process
        assert service.process.stdout
        for line in service.process.stdout:
            self.say(service.name, line.rstrip("\n"), index)
            if service.ready_line and service.ready_line in line:
                service.ready.set()

    def wait_ready(self, service: Service, timeout: float) -> bool:
        """Wait until `service` prints its ready line; False if it died or the time ran out."""
        deadline = time.monotonic() + timeout
        while not service.ready.wait(0.2):
            if service.process.poll() is not None or time.monotonic() > deadline:
                return False
        return True

    def first_dead(self) -> Service | None:
        for service in self.services:
            if service.process and service.process.poll() is not None:
                return service
        return None

    def watch(self, poll: float = 0.5) -> None:
        """Block until a process dies (raise StackError) or the user interrupts."""
        while True:
            dead = self.first_dead()
            if dead is not None:
                raise StackError(
                    f"{dead.name} exited with code {dead.process.returncode}; "
                    "stopping the rest of the stack."
                )
            time.sleep(poll)

    def stop(self) -> None:
        """Stop the processes newest first, each in turn; kill what does not stop in time.

        SIGTERM goes to each service's own process, not to its group: the worker then makes
        a warm shutdown and its pool children finish the tasks they are running (a child that
        got the signal itself would die mid-task, and an early-acknowledged task with it).
        In turn, so the broker, started first, is still there while the worker finishes.
        """
        deadline = time.monotonic() + self.stop_timeout
        for service in reversed(self.services):
            if service.process is None:
                continue
            self._terminate(service)
            try:
                service.process.wait(timeout=max(deadline - time.monotonic(), MIN_STOP_WAIT))
            except subprocess.TimeoutExpired:
                self.say(service.name, "did not stop in time; killing it")
            # Kill the whole group even after a clean exit: no pool child (nor runserver's
            # child, under the autoreloader) may outlive the stack.
            self._signal(service, signal.SIGKILL if not WINDOWS else signal.SIGTERM)
            service.process.wait()
        for service in self.services:
            if service.reader:
                service.reader.join(timeout=2)

    @classmethod
    def _terminate(cls, service: Service) -> None:
        process = service.process
        if WINDOWS or process is None:
            # Windows: a console control event reaches the group (there is no SIGTERM).
            cls._signal(service, signal.SIGTERM)
            return
        with contextlib.suppress(ProcessLookupError, OSError):
            process.send_signal(signal.SIGTERM)

    @staticmethod
    def _signal(service: Service, sig: int) -> None:
        process = service.process
        if process is None:
            return
        try:
            if WINDOWS:
                if sig == signal.SIGTERM and process.poll() is None:
                    process.send_signal(signal.CTRL_BREAK_EVENT)
                else:
                    process.kill()
            else:
                os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError, OSError):
            pass


@contextlib.contextmanager
def _stop_signals_deferred() -> Iterator[None]:
    """Ctrl-C (or SIGTERM) while a process is being started is raised once it has started.

    Raised inside Popen, after the fork, it lost the new process's handle: stop() could not
    stop it, and it outlived the stack (a Flower left listening).
    """
    if WINDOWS or threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def defer(signum: int, frame: object) -> None:
        caught.append(signum)

    previous = {number: signal.signal(number, defer) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if caught:
        raise KeyboardInterrupt


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def install_stop_signals() -> None:
    """Ctrl-C, `kill -INT` and `kill <pid>` all stop the stack cleanly.

    SIGINT is set explicitly because a shell that starts us in the background ignores it,
    and Python then keeps ignoring it.
    """

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, handler)
