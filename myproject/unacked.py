"""kombu's bookkeeping of unacknowledged messages, sent without waiting for Redis's replies.

kombu's Redis transport emulates acknowledgements. When a message arrives, a MULTI/EXEC adds it
to the `unacked` hash and to its index, a sorted set by time; when it is acknowledged, another
removes it. A message still there after the visibility timeout, or left by a worker that
stopped, goes back to its queue. Each of the two waits for Redis's reply in the worker's main
process: two round trips per task besides the BRPOP that fetched it. In bench item 3 they were
3 of the main process's 8.3 CPU seconds for 10,000 tasks, and the product ran 21% faster with
them switched off (which loses messages: not an option).

In the worker's event loop this QoS sends the same commands on a connection of its own and
reads the replies when they come (the loop watches that socket):
- An arrival's writes are sent before the message goes to the pool, as kombu's are; the worker
  only stops waiting for Redis to confirm them. Redis runs one connection's commands in order.
- Acknowledgements are collected and sent together: with the next arrival's writes, or at the
  next turn of the event loop, whichever comes first.
- Whatever reads or restores `unacked` (a rejected message put back, the restore at shutdown,
  the periodic restore of expired messages) first sends the collected acknowledgements and waits
  for every reply outstanding, so it sees every write made before it.

What it gives up, for a worker killed outright (SIGKILL, the machine lost) or a broker that goes
away while acknowledgements wait to be sent:
- A message acknowledged but not yet removed from `unacked` is delivered again after the
  visibility timeout. That is the last turn of the loop; with the solo pool, which runs a task
  inside the loop, it is the whole task. The product's claim (`reliability.delivery`) keeps a
  task from running twice, and an idempotent task may run again by definition.
- kombu already loses a message whose worker dies between the BRPOP that took it off the queue
  and the write that adds it to `unacked`. That window now lasts until Redis has run the write,
  instead of until the worker has sent it.

Without an event loop (a consumer that drains events itself) the QoS is kombu's own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from time import time
from typing import Any

from kombu.transport import redis
from kombu.transport.virtual import base as virtual
from kombu.utils.compat import register_after_fork
from kombu.utils.json import dumps
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

_LOST = (RedisConnectionError, RedisTimeoutError, OSError)
# Seconds a reply may take before the connection counts as lost: Celery bounds its own broker
# sockets the same way before it closes a connection, so a silent peer cannot hang a worker.
SOCKET_TIMEOUT = 5.0


def _close_in_child(writer: Writer) -> None:
    # A forked pool child must not keep the parent's socket open: the parent's event loop would
    # go on seeing it after the parent closed its own copy.
    writer._connection.disconnect()


def _refused(error: Exception) -> None:
    logger.error("Redis refused a write of the unacked-message index: %s", error)


class Writer:
    """One channel's connection for the bookkeeping, and the writes Redis has not confirmed.

    Every block of commands is kept until all its replies are read. When the connection is lost,
    the next send, turn of the loop or `sync` connects again and sends every unconfirmed block
    once more, in order: adding a message to `unacked` and removing it are both idempotent, so
    a block that Redis had run before the connection went is harmless to run twice.
    """

    def __init__(self, channel: Any, hub: Any) -> None:
        self.hub = hub
        # Delivery tags acknowledged since the last write (a pool's threads may add to it).
        self.acks: deque[str] = deque()
        self.closed = False
        pool = channel.pool
        kwargs = dict(pool.connection_kwargs)
        timeout = kwargs.get("socket_timeout") or SOCKET_TIMEOUT
        kwargs["socket_timeout"] = min(timeout, SOCKET_TIMEOUT)
        self._connection = pool.connection_class(**kwargs)
        self._fd: int | None = None
        # [replies expected, replies still to read, the packed commands]
        self._sent: deque[list] = deque()
        self._lock = threading.RLock()
        prefix = channel.global_keyprefix or ""
        self._index = prefix + channel.unacked_index_key
        self._hash = prefix + channel.unacked_key
        if register_after_fork is not None:
            register_after_fork(self, _close_in_child)

    def append(self, delivery_tag: str, payload: str) -> None:
        arrival = [
            ("ZADD", self._index, time(), delivery_tag),
            ("HSET", self._hash, delivery_tag, payload),
        ]
        with self._lock:
            # The removals in a transaction of their own, first: a Redis out of memory refuses
            # the arrival's writes (and would abort everything in its transaction), never a
            # removal; and a message put back under the same tag is not removed again.
            removal = self._removal()
            self._send(*([removal] if removal else []), arrival)

    def flush_acks(self) -> None:
        if not self.acks:
            # Every turn of the event loop asks: most have nothing to send.
            return
        with self._lock:
            try:
                self._send_acks()
            except _LOST:
                # The block is kept: sent again once the broker is back.
                logger.debug("Acknowledgements not sent yet: the broker is away.", exc_info=True)
            except RedisError:
                self._drop()
                logger.exception(
                    "Acknowledgements not sent yet: the broker refused the connection."
                )

    def sync(self) -> None:
        """Send the collected acknowledgements and wait until Redis ran every write sent."""
        with self._lock:
            self._send_acks()
            self._read(block=True)

    def unconfirmed(self) -> int:
        return len(self._sent)

    def close(self) -> None:
        with self._lock:
            # Before the last sync: an acknowledgement a pool thread adds after this sees it
            # and is written by kombu's own path instead (QoS.ack).
            self.closed = True
            try:
                self.sync()
            except _LOST:
                logger.warning(
                    "The broker went away before it confirmed %d writes of the "
                    "unacked-message index: messages acknowledged in them are delivered "
                    "again after the visibility timeout, and messages that arrived in them "
                    "are not recorded as unacknowledged.",
                    len(self._sent),
                )
            finally:
                self._drop()

    def _send_acks(self) -> None:
        removal = self._removal()
        if removal:
            self._send(removal)

    def _removal(self) -> list[tuple]:
        tags = []
        acks = self.acks
        while acks:
            tags.append(acks.popleft())
        if not tags:
            return []
        return [("ZREM", self._index, *tags), ("HDEL", self._hash, *tags)]

    # The connection ------------------------------------------------------------------------

    def _send(self, *transactions: list[tuple]) -> None:
        """Send each list of commands as a MULTI/EXEC of its own, all in one write."""
        with self._lock:
            packed = []
            for commands in transactions:
                commands = [("MULTI",), *commands, ("EXEC",)]
                block = self._connection.pack_commands(commands)
                self._sent.append([len(commands), len(commands), block])
                packed += block
            if self._connection._sock is None:
                # Closed without us (redis-py drops a connection on any error): start over.
                self._drop()
            if self._fd is None:
                self._connect()
                return
            try:
                self._connection.send_packed_command(packed, check_health=False)
            except _LOST:
                # A MULTI that lost its EXEC on the way dies with its connection.
                self._drop()
                self._connect()
            except BaseException:
                # Interrupted (a signal's exception): what was sent is unknown, start over.
                self._drop()
                raise

    def _connect(self) -> None:
        """Connect, and send every block not confirmed yet (the new one included)."""
        connection = self._connection
        connection.connect()
        sock = connection._sock
        self._fd = sock.fileno()
        self.hub.add_reader(self._fd, self._on_readable)
        try:
            for block in self._sent:
                block[1] = block[0]
                connection.send_packed_command(block[2], check_health=False)
        except _LOST:
            self._drop()
            raise

    def _on_readable(self) -> None:
        with self._lock:
            if not self._sent:
                # Redis sends nothing unasked on this connection: readable with no reply
                # expected means closed (an idle timeout, CLIENT KILL). Left registered, it
                # would wake the loop forever. (The replies may also have been read by a
                # sync() since the loop saw them: then nothing is readable any more.)
                with contextlib.suppress(*_LOST):
                    if self._fd is not None and not self._connection.can_read(timeout=0):
                        return
                self._drop()
                return
            try:
                self._read(block=False)
            except _LOST:
                logger.debug("The broker is away: writes kept until it is back.", exc_info=True)
            except RedisError:
                # A connection refused for its settings (a database index, an ACL): kept
                # writes are sent again with the next write, which reports the error.
                self._drop()
                logger.exception("The unacked-message index could not be written.")

    def _read(self, block: bool) -> None:
        connection = self._connection
        reconnects = 0
        while self._sent:
            if self._fd is not None and connection._sock is None:
                self._drop()
            if self._fd is None:
                reconnects += 1
                if reconnects > 3:
                    raise RedisConnectionError("The broker keeps closing the connection.")
                self._connect()
            try:
                if not block and not connection.can_read(timeout=0):
                    return
                reply = connection.read_response(disable_decoding=True)
            except ResponseError as exc:
                self._replied()
                _refused(exc)
                continue
            except _LOST:
                self._drop()
                continue
            except BaseException:
                self._drop()
                raise
            self._replied()
            if isinstance(reply, list):
                for item in reply:
                    if isinstance(item, Exception):
                        _refused(item)

    def _replied(self) -> None:
        block = self._sent[0]
        block[1] -= 1
        if not block[1]:
            self._sent.popleft()

    def _drop(self) -> None:
        fd, self._fd = self._fd, None
        # Only while the loop's reader for that number is still ours: a socket closed by redis-py
        # may have given its number to another one since.
        reader = self.hub.readers.get(fd) if fd is not None else None
        if reader is not None and reader[0] == self._on_readable:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.hub.remove_reader(fd)
        self._connection.disconnect()


class QoS(redis.QoS):
    """kombu's Redis QoS, with its writes sent through a `Writer` inside an event loop."""

    _writer: Writer | None = None
    _closed = False

    def writer(self) -> Writer | None:
        writer = self._writer
        if writer is None:
            if self._closed:
                return None
            hub = getattr(self.channel.connection, "hub", None)
            if hub is None:
                return None
            writer = self._writer = Writer(self.channel, hub)
        return writer

    def _in_loop(self) -> Writer | None:
        writer = self.writer()
        if writer is not None and self.channel.connection.in_loop_thread():
            return writer
        return None

    def append(self, message: Any, delivery_tag: str) -> None:
        writer = self._in_loop()
        if writer is None:
            self.sync()
            return super().append(message, delivery_tag)
        delivery = message.delivery_info
        payload = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        writer.append(delivery_tag, payload)
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        writer = self.writer()
        if writer is None:
            return super().ack(delivery_tag)
        writer.acks.append(delivery_tag)
        if writer.closed:
            # The channel closed meanwhile (a pool thread's ack): its writer sends no more.
            return super().ack(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if not requeue:
            return self.ack(delivery_tag)
        self.sync()
        return super().reject(delivery_tag, requeue=True)

    def restore_unacked(self, client: Any = None) -> Any:
        self.sync()
        if client is None and getattr(self.channel.connection, "client", None) is None:
            # kombu closes the channel of a lost connection after the connection itself, and
            # its restore then fails with AttributeError, which nothing catches: the worker
            # died ("Unrecoverable error") instead of reconnecting. The messages stay in the
            # index in Redis; a worker puts them back once the visibility timeout has passed.
            logger.warning(
                "The broker connection closed before %d message(s) this worker took and had "
                "not started could be put back in their queue: they return to it after the "
                "visibility timeout.",
                len(self._delivered),
            )
            return None
        return super().restore_unacked(client)

    def restore_visible(self, *args: Any, **kwargs: Any) -> Any:
        self.sync()
        return super().restore_visible(*args, **kwargs)

    def restore_by_tag(self, *args: Any, **kwargs: Any) -> Any:
        self.sync()
        return super().restore_by_tag(*args, **kwargs)

    def flush_acks(self) -> None:
        if self._writer is not None:
            self._writer.flush_acks()

    def sync(self) -> None:
        if self._writer is not None:
            self._writer.sync()

    def close(self) -> None:
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
