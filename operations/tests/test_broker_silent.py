"""A broker that stops answering on a connection already made: the send fails within seconds.

On RabbitMQ a publish used to "succeed" as soon as its bytes were in the socket, and a broker
that had stopped answering (a network partition, a frozen host) lost every task while each page
said queued. With publisher confirms, bounded by the socket timeout, the send fails instead.
Runs on the session's broker: embedded Redis in the main pass, RabbitMQ in the smoke pass.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest

# transaction=True: the console's records of these sends are written by its buffer's thread,
# outside a test's transaction; they are written before the test ends (below) and the tables
# emptied after it, so no later test finds them.
pytestmark = [pytest.mark.integration, pytest.mark.smoke, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _records_written_before_the_end() -> Iterator[None]:
    from taskconsole import buffer

    yield
    buffer.flush()


class FreezingProxy:
    """A TCP proxy in front of the broker that can stop forwarding while keeping connections."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while not self.closed.is_set():
            if self.frozen.is_set():
                self.closed.wait(0.05)  # nothing read: the sender's bytes wait in its socket
                continue
            source.settimeout(0.05)
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            # Read just as the proxy froze: held back too, like everything after it.
            while self.frozen.is_set() and not self.closed.is_set():
                self.closed.wait(0.05)
            if self.closed.is_set():
                return
            sink.sendall(data)

    def close(self) -> None:
        self.closed.set()
        for sock in self.sockets:
            sock.close()


@contextmanager
def through_proxy(broker_url: str) -> Iterator[FreezingProxy]:
    from conftest import _use_broker

    parts = urlsplit(broker_url)
    default_port = 5672 if parts.scheme.startswith(("amqp", "pyamqp")) else 6379
    proxy = FreezingProxy(parts.hostname or "127.0.0.1", parts.port or default_port)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    _use_broker(
        urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))
    )
    try:
        yield proxy
    finally:
        _use_broker(broker_url)
        proxy.close()


HUNG = object()


def within(seconds: float, call: Callable[[], object]) -> object:
    """What call returned or raised, on a thread of its own; HUNG if it had not ended in time."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    return outcome[0] if outcome else HUNG


def test_a_send_to_a_broker_that_stopped_answering_fails_instead_of_vanishing(
    broker_url: str,
) -> None:
    from app.tasks import add

    with through_proxy(broker_url) as proxy:
        add.delay(1, 1)  # the connection is made and works
        proxy.frozen.set()
        outcome = within(90, lambda: add.delay(2, 2).id)
        assert outcome is not HUNG, "the send hung on a broker that does not answer"
        assert isinstance(outcome, Exception), "a send the broker never confirmed was sent"


def test_a_worker_heartbeat_to_a_broker_that_stopped_answering_does_not_hang(
    broker_url: str,
) -> None:
    """Celery's events and heartbeats go through kombu's own producer, with no timeout of their
    own: on RabbitMQ, waiting for a confirmation that never comes held the worker's loop."""
    from myproject.celery import app as celery_app

    with through_proxy(broker_url) as proxy:
        connection = celery_app.connection_for_write()
        try:
            dispatcher = celery_app.events.Dispatcher(connection, enabled=True)
            dispatcher.send("worker-heartbeat")  # the connection is made and works
            proxy.frozen.set()
            outcome = within(90, lambda: dispatcher.send("worker-heartbeat"))
            assert outcome is not HUNG, "a heartbeat hung on a broker that does not answer"
        finally:
            # Its goodbye would wait for the frozen broker's answer: dropped, not said.
            proxy.close()
            connection.collect()


def test_a_send_after_the_broker_closed_a_pooled_connection_goes_out_on_a_new_one(
    broker_url: str,
) -> None:
    """A broker restart closes the connections kept in kombu's pool; py-amqp tears their channels
    down (no connection left) when it reads the close. A producer pool made afterwards (a
    forked process, a changed broker setting) was handed such a channel, and the send failed
    with an AttributeError on RabbitMQ (found by the chaos suite) instead of connecting again.
    """
    import uuid

    from kombu import pools

    from app.tasks import add
    from conftest import _use_broker
    from myproject.celery import app
    from taskconsole.vanished import queue_state

    queue = f"closed_{uuid.uuid4().hex[:8]}"
    add.apply_async((1, 1), queue=queue)  # a connection and a channel are kept in the pool
    with pools.connections[app.connection_for_write()].acquire() as kept:
        # The broker's side of each kept socket goes away, as in a restart.
        if broker_url.startswith("amqp"):
            sockets = [kept.connection.transport.sock]
        else:
            pools_ = [ch._pool for ch in kept.connection.channels if ch._pool is not None]
            sockets = [
                c._sock
                for pool in pools_
                for c in (*pool._available_connections, *pool._in_use_connections)
                if c._sock is not None
            ]
        assert sockets
        for sock in sockets:
            sock.shutdown(socket.SHUT_RDWR)
    _use_broker(broker_url)  # a producer pool made afterwards
    # To a queue not declared yet on that connection: declaring it meets the closed socket.
    other = f"{queue}_new"
    outcome = within(60, lambda: add.apply_async((2, 2), queue=other).id)
    assert isinstance(outcome, str), f"the send did not go out: {outcome!r}"
    with app.connection_for_read() as connection:
        assert queue_state(other, connection) == (1, 0)
        for name in (queue, other):
            connection.default_channel.queue_delete(name)
