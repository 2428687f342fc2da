"""The project's broker connections keep one Redis client per channel (myproject/broker.py)."""

from __future__ import annotations

import threading
import uuid

import pytest
from kombu import Exchange, Queue
from kombu import pools as kombu_pools
from kombu.transport import redis

from app.tasks import ping
from myproject import broker
from myproject.celery import app as celery_app


def test_every_redis_connection_of_the_app_keeps_its_client(broker_url: str) -> None:
    assert broker_url.startswith("redis://")
    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        assert isinstance(channel, broker.Channel)
        client = channel._create_client()
        assert channel._create_client() is client
        assert client.ping()
        # The event loop's client is kombu's own, on its own pool.
        assert channel._create_client(asynchronous=True) is not client
        # kombu drops the pool when the channel reconnects: the kept client goes with it.
        channel._disconnect_pools()
        fresh = channel._create_client()
        assert fresh is not client
        assert fresh.connection_pool is channel.pool
        assert fresh.ping()
    # Celery publishes through its pool of connections, which kombu would fill with its own
    # connection class: the producers' channels are ours too.
    with celery_app.producer_or_acquire() as producer:
        assert isinstance(producer.connection, broker.PooledConnection)
        assert isinstance(producer.channel, broker.Channel)


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("redis://127.0.0.1:6379/0", broker.Transport),
        ("rediss://127.0.0.1:6380/0?ssl_cert_reqs=required", broker.Transport),
        ("amqp://guest:guest@127.0.0.1:5672//", broker.AmqpTransport),
        ("sentinel://127.0.0.1:26379/0", redis.SentinelTransport),
    ],
)
def test_only_kombus_plain_redis_and_amqp_transports_are_changed(url: str, transport: type) -> None:
    # Nothing connects: the transport class is chosen from the URL.
    connection = celery_app.connection_for_write(url)
    assert connection.get_transport_cls() is transport
    pooled = connection.Pool(limit=1).acquire()
    try:
        assert pooled.get_transport_cls() is transport
    finally:
        pooled.release()
    assert issubclass(broker.Transport, redis.Transport)
    # The URL a connection shows (banners, Flower) is unchanged.
    assert connection.as_uri().split("://")[0] == url.split("://")[0]


def test_threads_may_share_a_channels_kept_client(broker_url: str) -> None:
    # redis-py's client takes a connection from its pool for each command, so a kept client
    # can be shared: eight threads pushing through one channel's client at once.
    assert broker_url.startswith("redis://")
    key = f"test-kept-client-{uuid.uuid4().hex}"
    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        client = channel._create_client()
        shared: list[bool] = []

        def push(n: int) -> None:
            for i in range(25):
                own = channel._create_client()
                shared.append(own is client)
                own.rpush(key, f"{n}-{i}")

        threads = [threading.Thread(target=push, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            pushed = sorted(v.decode() for v in client.lrange(key, 0, -1))
        finally:
            client.delete(key)
    assert shared == [True] * 200
    assert pushed == sorted(f"{n}-{i}" for n in range(8) for i in range(25))


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_threads_publish_through_the_pool_of_kept_clients(celery_worker) -> None:
    # Each thread takes a connection (and its channel, with its kept client) from Celery's
    # pool: every message of eight threads publishing at once arrives and runs.
    ids: list[str] = []
    lock = threading.Lock()

    def publish() -> None:
        for _ in range(25):
            task_id = ping.delay().id
            with lock:
                ids.append(task_id)

    threads = [threading.Thread(target=publish) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 200
    results = [celery_app.AsyncResult(task_id).get(timeout=60) for task_id in ids]
    assert results == ["pong"] * 200


@pytest.mark.smoke
def test_a_queue_is_declared_once_per_connection_and_again_after_a_reconnect(
    broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The app's producer asks kombu's cache of declared entities before binding a copy of the
    # queue; a queue missing from it is declared as kombu would. On RabbitMQ a message sent to
    # a queue that was never declared is dropped: reading it back proves the declaration.
    name = f"test-declare-{uuid.uuid4().hex[:8]}"
    binds: list[str] = []
    kombu_bind = Queue.bind

    def counting_bind(self: Queue, channel: object) -> Queue:
        binds.append(self.name)
        return kombu_bind(self, channel)

    monkeypatch.setattr(Queue, "bind", counting_bind)

    def send(producer: broker.Producer) -> None:
        celery_app.send_task("app.tasks.ping", queue=name, producer=producer)

    def read_back(count: int) -> int:
        with celery_app.connection_for_read() as conn:
            queue = conn.SimpleQueue(name, no_ack=True)
            try:
                for _ in range(count):
                    queue.get(timeout=10)
            finally:
                queue.close()
        return count

    # The app's pool of producers is its own: kombu's registry, shared by any other code in
    # the process that publishes to the same broker, keeps making kombu's producers.
    assert celery_app.amqp.publisher_pool is celery_app.amqp.producer_pool
    with celery_app.connection_for_write() as conn:
        registry_pool = kombu_pools.producers[conn]
        assert registry_pool is not celery_app.amqp.producer_pool
        assert registry_pool.Producer is kombu_pools.Producer
    with celery_app.producer_or_acquire() as producer:
        assert isinstance(producer, broker.Producer)
        send(producer)
        declared_binds = binds.count(name)
        assert declared_binds >= 1
        for _ in range(5):
            send(producer)
        assert binds.count(name) == declared_binds, "a declared queue was bound again"
        assert read_back(6) == 6
        # A reconnect empties the connection's cache; the queue is deleted meanwhile, so
        # only a new declaration brings the next message in.
        with celery_app.connection_for_write() as conn:
            Queue(name, Exchange(name), routing_key=name)(conn.default_channel).delete()
        producer.connection.declared_entities.clear()
        send(producer)
        assert binds.count(name) > declared_binds
        assert read_back(1) == 1
    with celery_app.connection_for_write() as conn:
        Queue(name, Exchange(name), routing_key=name)(conn.default_channel).delete()
