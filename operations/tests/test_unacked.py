"""The worker's unacked-message bookkeeping, sent without waiting (myproject/unacked.py).

Against a real Redis: the writer's own tests turn a real kombu event loop (Hub) by hand; the
others run real workers and look at what kombu keeps in Redis.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator

import pytest
import redis as redis_py
from kombu import Consumer, Queue
from kombu.asynchronous import Hub

from app.tasks import ping
from myproject import unacked
from myproject.celery import app as celery_app
from operations.testing import wait_for
from reliability.ledger import ledger_default, ledger_idempotent
from reliability.models import LedgerEntry


@pytest.fixture
def redis_client(broker_url: str) -> redis_py.Redis:
    assert broker_url.startswith("redis://")
    return redis_py.Redis.from_url(broker_url)


@pytest.fixture
def writer(broker_url: str, redis_client: redis_py.Redis) -> Iterator[unacked.Writer]:
    """A writer on keys of its own, in a real (hand-turned) event loop."""
    hub = Hub()
    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        suffix = uuid.uuid4().hex[:8]
        channel.unacked_key = f"test-unacked-{suffix}"
        channel.unacked_index_key = f"test-unacked-index-{suffix}"
        writer = unacked.Writer(channel, hub)
        yield writer
        writer.close()
        redis_client.delete(channel.unacked_key, channel.unacked_index_key)
    hub.close()


def turn(hub: Hub, timeout: float = 1.0) -> None:
    """One turn of the loop: call the readers of every socket that is readable."""
    for fd, _event in hub.poller.poll(timeout) or ():
        callback, args = hub.readers[fd]
        callback(*args)


def stored(client: redis_py.Redis, writer: unacked.Writer) -> tuple[set[str], set[str]]:
    return (
        {tag.decode() for tag in client.hkeys(writer._hash)},
        {tag.decode() for tag in client.zrange(writer._index, 0, -1)},
    )


def test_an_arrival_is_written_without_waiting_and_confirmed_by_the_loop(
    writer: unacked.Writer, redis_client: redis_py.Redis
) -> None:
    before = time.time()
    writer.append("tag-1", '["message", "", "default"]')
    assert writer.unconfirmed() == 1  # sent, its replies not read
    wait_for(lambda: (turn(writer.hub, 0.2), writer.unconfirmed() == 0)[1], timeout=5)
    assert redis_client.hget(writer._hash, "tag-1") == b'["message", "", "default"]'
    assert before <= redis_client.zscore(writer._index, "tag-1") <= time.time()


def test_acknowledgements_go_with_the_next_arrival_or_the_next_turn(
    writer: unacked.Writer, redis_client: redis_py.Redis
) -> None:
    writer.append("a", "{}")
    writer.append("b", "{}")
    writer.acks.append("a")
    writer.append("c", "{}")  # the removal of "a", then "c": two transactions in one write
    assert writer.unconfirmed() == 4
    writer.sync()
    assert stored(redis_client, writer) == ({"b", "c"}, {"b", "c"})
    writer.acks += ["b", "c"]
    writer.flush_acks()  # what the worker's loop does on each turn
    writer.flush_acks()  # nothing left: nothing sent
    assert writer.unconfirmed() == 1
    writer.sync()
    assert stored(redis_client, writer) == (set(), set())


def test_a_removal_goes_before_the_arrival_it_is_sent_with(
    writer: unacked.Writer, redis_client: redis_py.Redis
) -> None:
    # A message acknowledged, then delivered again under the same tag (put back by a restore)
    # before the acknowledgement was sent: the new delivery stays recorded.
    writer.append("same", '"first"')
    writer.acks.append("same")
    writer.append("same", '"again"')
    writer.sync()
    assert redis_client.hget(writer._hash, "same") == b'"again"'
    assert redis_client.zscore(writer._index, "same") is not None


def test_sync_returns_once_redis_ran_every_write(
    writer: unacked.Writer, redis_client: redis_py.Redis
) -> None:
    tags = [f"t{i}" for i in range(300)]
    for tag in tags:
        writer.append(tag, json.dumps([tag, "", "default"]))
    writer.acks += tags[:100]
    writer.sync()
    assert writer.unconfirmed() == 0
    assert stored(redis_client, writer) == (set(tags[100:]), set(tags[100:]))


def test_writes_on_a_lost_connection_are_sent_again_on_a_new_one(
    writer: unacked.Writer, redis_client: redis_py.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    writer.append("before", "{}")
    writer.sync()
    # Redis closes the writer's connection; the writer learns it only when it uses it.
    address = "{}:{}".format(*writer._connection._sock.getsockname()[:2])
    redis_client.client_kill(address)
    writer.append("after", "{}")  # may land in the closed socket, unconfirmed
    writer.acks.append("before")
    with caplog.at_level(logging.ERROR, logger="myproject.unacked"):
        writer.sync()
    assert stored(redis_client, writer) == ({"after"}, {"after"})
    assert "{}:{}".format(*writer._connection._sock.getsockname()[:2]) != address
    assert not caplog.records


def test_a_connection_closed_while_idle_is_let_go_and_made_again_when_needed(
    writer: unacked.Writer, redis_client: redis_py.Redis
) -> None:
    writer.append("x", "{}")
    writer.sync()
    fd = writer._fd
    address = "{}:{}".format(*writer._connection._sock.getsockname()[:2])
    redis_client.client_kill(address)  # as an idle timeout on the server would
    # The loop sees the closed socket readable with no reply expected: the writer lets it go
    # (left registered, a level-triggered poll would report it on every turn).
    wait_for(lambda: (turn(writer.hub, 0.2), writer._fd is None)[1], timeout=5)
    assert fd not in writer.hub.readers
    writer.append("y", "{}")
    writer.sync()
    assert stored(redis_client, writer) == ({"x", "y"}, {"x", "y"})


def test_a_broker_that_is_away_keeps_the_acknowledgements_for_later(
    writer: unacked.Writer, redis_client: redis_py.Redis
) -> None:
    writer.append("x", "{}")
    writer.sync()
    # Point the writer at a port nobody listens on: the broker is away.
    port = writer._connection.port
    writer._drop()
    writer._connection.port = 1
    writer.acks.append("x")
    writer.flush_acks()  # no error: kept
    with pytest.raises(unacked.RedisConnectionError):
        writer.sync()
    assert writer.unconfirmed() == 1
    assert stored(redis_client, writer) == ({"x"}, {"x"})
    writer._connection.port = port  # the broker is back
    writer.sync()
    assert stored(redis_client, writer) == (set(), set())


def test_a_refused_write_is_logged_and_the_writer_goes_on(
    writer: unacked.Writer, redis_client: redis_py.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    redis_client.set(writer._hash, "not a hash")
    with caplog.at_level(logging.ERROR, logger="myproject.unacked"):
        writer.append("refused", "{}")
        writer.sync()
    assert "refused a write of the unacked-message index" in caplog.text
    assert "WRONGTYPE" in caplog.text
    redis_client.delete(writer._hash, writer._index)
    writer.append("accepted", "{}")
    writer.sync()
    assert stored(redis_client, writer) == ({"accepted"}, {"accepted"})


def test_in_an_event_loop_a_consumer_records_and_acknowledges_through_the_writer(
    broker_url: str, redis_client: redis_py.Redis
) -> None:
    # What a worker's consumer does, turned by hand: the project's transport registered with a
    # real event loop, a queue consumed with acknowledgements.
    name = f"test-unacked-loop-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, routing_key=name)
    hub = Hub()
    received: list = []
    try:
        with celery_app.connection_for_read() as conn:
            conn.transport.register_with_event_loop(conn.connection, hub)
            channel = conn.default_channel
            consumer = Consumer(
                channel, [queue], callbacks=[lambda _body, m: received.append(m)], accept=["json"]
            )
            with consumer, celery_app.producer_or_acquire() as producer:
                producer.publish({"n": 1}, routing_key=name, serializer="json", declare=[queue])
                wait_for(lambda: (hub.run_once(), received)[1], timeout=10)
                message = received[0]
                tag = message.delivery_tag
                writer = channel.qos.writer()
                assert writer is not None
                # Recorded as unacknowledged by the writer, once the loop read Redis's reply.
                wait_for(lambda: (hub.run_once(), writer.unconfirmed() == 0)[1], timeout=10)
                assert redis_client.hexists("unacked", tag)
                message.ack()
                assert list(writer.acks) == [tag]  # collected, not sent yet
                assert redis_client.hexists("unacked", tag)
                hub.run_once()  # the next turn sends it
                assert not writer.acks
                writer.sync()
                assert not redis_client.hexists("unacked", tag)
                assert redis_client.zscore("unacked_index", tag) is None
            channel.queue_delete(name)
    finally:
        hub.close()


def test_without_an_event_loop_the_qos_is_kombus_own(broker_url: str) -> None:
    with celery_app.connection_for_write() as conn:
        qos = conn.default_channel.qos
        assert isinstance(qos, unacked.QoS)
        assert qos.writer() is None


# With real workers -------------------------------------------------------------------------


def _tags_in_unacked(client: redis_py.Redis, task_ids: set[str]) -> set[str]:
    found = set()
    for raw in client.hvals("unacked"):
        message = json.loads(raw)[0]
        if message["headers"]["id"] in task_ids:
            found.add(message["headers"]["id"])
    return found


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_leaves_nothing_in_unacked_once_its_tasks_are_done(
    celery_worker, redis_client: redis_py.Redis
) -> None:
    results = [ping.delay() for _ in range(200)]
    assert [r.get(timeout=60) for r in results] == ["pong"] * 200
    ids = {r.id for r in results}
    # Acknowledged at the latest on the loop's next turn.
    wait_for(lambda: not _tags_in_unacked(redis_client, ids), timeout=10)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_running_acks_late_task_is_in_unacked_until_it_is_done(
    celery_worker, redis_client: redis_py.Redis
) -> None:
    run = uuid.uuid4().hex
    result = ledger_idempotent.delay(run, sleep=2.0)
    wait_for(lambda: LedgerEntry.objects.filter(run=run).exists(), timeout=30)
    assert _tags_in_unacked(redis_client, {result.id}) == {result.id}
    assert result.get(timeout=30) == 1
    wait_for(lambda: not _tags_in_unacked(redis_client, {result.id}), timeout=10)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_stopped_worker_puts_back_what_it_held_and_acknowledges_what_it_ran(
    start_worker, redis_client: redis_py.Redis
) -> None:
    # One process holding one running task and three more it took ahead (prefetch 4).
    worker = start_worker(queues="unacked_test", concurrency=1, name="unacked")
    run = uuid.uuid4().hex
    running = ledger_default.apply_async((run,), {"sleep": 2.0}, queue="unacked_test")
    waiting = [ledger_default.apply_async((run,), queue="unacked_test").id for _ in range(3)]
    wait_for(lambda: LedgerEntry.objects.filter(run=run).count() == 1, timeout=30)
    wait_for(lambda: redis_client.llen("unacked_test") == 0, timeout=10)
    assert _tags_in_unacked(redis_client, set(waiting)) == set(waiting)
    worker.stop(timeout=30)  # a warm shutdown: the running task ends first
    # The running task ran and was acknowledged; the ones held were put back on the queue.
    assert running.get(timeout=10) == 1
    assert not _tags_in_unacked(redis_client, {running.id, *waiting})
    queued = redis_client.lrange("unacked_test", 0, -1)
    assert {json.loads(raw)["headers"]["id"] for raw in queued} == set(waiting)
    redis_client.delete("unacked_test")
