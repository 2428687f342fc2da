"""The project's broker connections: kombu's, with one Redis client per channel kept.

kombu's Redis transport builds a new `redis.Redis` client for every command it sends outside
the worker's event loop: every publish, and every acknowledgement's bookkeeping. The client
sits on the channel's connection pool, so building it connects nothing, but redis-py fills
its table of reply callbacks (about 170 entries) each time: on a 2-core VM that was 0.1 ms of
a 0.5 ms `delay()` (bench item 1). A client on a pool can be shared by threads (each command
takes a connection from the pool, and the pool starts over in a forked child), so the channel
keeps the one it built, and builds another only when its pool is replaced (kombu drops the
pool when the channel reconnects).

The app's producers look up kombu's cache of declared queues before binding a copy of the queue
(`Producer`).

In the worker's event loop, the channel's bookkeeping of unacknowledged messages is sent without
waiting for Redis's replies (`myproject.unacked`).

Only the plain Redis transport is changed that way (redis://, rediss://, and the socket form);
on RabbitMQ (pyamqp) the wait for the broker's confirmation of a publish is bounded
(`AmqpChannel`); Sentinel and the rest are kombu's own. `myproject/celery.py` installs it with
`Celery(..., amqp="myproject.broker:AMQP")`.
"""

from __future__ import annotations

import threading
from typing import Any

from celery.app.amqp import AMQP as CeleryAMQP
from kombu import Connection as KombuConnection
from kombu import Producer as KombuProducer
from kombu import connection, pools
from kombu.transport import pyamqp, redis
from redis.exceptions import ConnectionError as RedisConnectionError

from myproject import unacked


class Channel(redis.Channel):
    QoS = unacked.QoS
    _kept_client: tuple[Any, Any] | None = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            # The worker's event loop owns that one (kombu keeps it as `self.client`).
            return super()._create_client(asynchronous=True)
        if getattr(self.connection, "client", None) is None and self._pool is None:
            # The connection was closed under this channel (a lost broker): kombu would fail
            # on its missing address with AttributeError, which the worker's clean-up steps
            # (gossip, the restore of unacknowledged messages) do not expect; a connection
            # error they do, and the worker reconnects.
            raise RedisConnectionError("The broker connection is closed.")
        pool = self.pool
        kept = self._kept_client
        if kept is None or kept[0] is not pool:
            kept = self._kept_client = (pool, super()._create_client())
        return kept[1]

    def close(self) -> None:
        qos = self._qos
        try:
            if isinstance(qos, unacked.QoS):
                # Before kombu restores what this channel did not acknowledge: it reads
                # `unacked`.
                qos.close()
        finally:
            super().close()


class Transport(redis.Transport):
    Channel = Channel
    #: The worker's event loop, once the connection is registered with one, and its thread.
    hub: Any = None
    _loop_thread: int | None = None

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)
        self.hub = loop
        self._loop_thread = threading.get_ident()
        loop.on_tick.add(self._flush_acks)

    def close_connection(self, connection: Any) -> None:
        if self.hub is not None:
            self.hub.on_tick.discard(self._flush_acks)
        super().close_connection(connection)

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def _flush_acks(self) -> None:
        for channel in self.channels:
            qos = channel._qos
            if isinstance(qos, unacked.QoS):
                qos.flush_acks()


class AmqpChannel(pyamqp.Channel):
    """kombu's AMQP channel, whose wait for RabbitMQ's confirmation of a publish is bounded.

    With confirm_publish (settings) every publish on the connection waits for RabbitMQ's
    acknowledgement: the app's tasks, and Celery's own events and worker heartbeats, which go
    through kombu's producer with no timeout of their own. A RabbitMQ that stopped answering
    (a partition, a memory alarm) then held the worker's event loop for ever. Here a publish
    waits as long as a Redis command would (the broker's socket_timeout) and then raises.
    """

    def basic_publish_confirm(self, *args: Any, **kwargs: Any) -> Any:
        # A channel whose connection RabbitMQ closed (a restart) has none: py-amqp then raises
        # its recoverable "connection closed", on which kombu connects again and resends.
        connection = self.connection
        unbounded = kwargs.get("confirm_timeout") is None and kwargs.get("timeout") is None
        if unbounded and connection is not None:
            kwargs["confirm_timeout"] = connection.confirm_timeout
        return super().basic_publish_confirm(*args, **kwargs)


class AmqpConnection(pyamqp.Connection):
    Channel = AmqpChannel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The transport options reach the connection as keyword arguments.
        self.confirm_timeout = kwargs.get("socket_timeout")
        super().__init__(*args, **kwargs)


class AmqpTransport(pyamqp.Transport):
    Connection = AmqpConnection


#: kombu's transports and the project's; a subclass of kombu's (Sentinel) or a project's own
#: transport is left alone.
_OURS = {redis.Transport: Transport, pyamqp.Transport: AmqpTransport}


class _KeepsClients:
    def get_transport_cls(self) -> type:
        transport_cls = super().get_transport_cls()
        return _OURS.get(transport_cls, transport_cls)


class Connection(_KeepsClients, KombuConnection):
    def Pool(self, limit: int | None = None, **kwargs: Any) -> ConnectionPool:
        # Celery publishes through a pool of connections (app.pool), which kombu fills with
        # its own connection class: this one fills it with ours.
        return ConnectionPool(self, limit=limit, **kwargs)


class PooledConnection(_KeepsClients, connection.PooledConnection):
    pass


class ConnectionPool(connection.ConnectionPool):
    def new(self) -> PooledConnection:
        return PooledConnection(self, **dict(self.connection._info(resolve=False)))


class Producer(KombuProducer):
    """kombu's producer, without binding a copy of an already declared queue on every publish.

    Celery asks for the task's queue to be declared with every message it sends. kombu answers
    from its connection's cache of declared entities, but only after binding a copy of the
    queue (its exchange and bindings copied with it) to the channel: 40-50 µs of a 500 µs
    `delay()` on a 2-core VM (bench item 1). The cache is asked first here, with the same key;
    an entity not in it (a new connection, or one whose cache kombu emptied on reconnecting)
    takes kombu's own path, which declares it.
    """

    def maybe_declare(self, entity: Any, retry: bool = False, **retry_policy: Any) -> Any:
        if entity and entity.can_cache_declaration:
            client = getattr(getattr(self.channel, "connection", None), "client", None)
            declared = getattr(client, "declared_entities", None)
            if declared is not None and hash(entity) in declared:
                return False
        return super().maybe_declare(entity, retry, **retry_policy)


class AMQP(CeleryAMQP):
    """Celery's messaging layer with the connection class above (all of the app's
    connections are made through it: producers, the worker's consumer, control, events)
    and the producer above."""

    Connection = Connection
    BrokerConnection = Connection
    Producer = Producer

    @property
    def producer_pool(self) -> Any:
        if self._producer_pool is None:
            # Celery takes its pool from kombu's registry, which is shared by every connection
            # with the same settings in the process and makes kombu's producers. The app gets
            # a pool of its own with the producer above, over the same pool of connections;
            # Celery drops it in a forked child, as it drops the registry's.
            self._producer_pool = pools.ProducerPool(
                pools.connections[self.app.connection_for_write()],
                limit=self.app.pool.limit,
                Producer=Producer,
            )
        return self._producer_pool

    publisher_pool = producer_pool
