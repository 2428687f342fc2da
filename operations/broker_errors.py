"""What a failed publish raises.

kombu turns the broker's failures into its OperationalError, but not all of them: on RabbitMQ
an unknown virtual host (py-amqp's NotAllowed) or refused credentials (AccessRefused) come
through as py-amqp's own errors. Code that answers "the broker is unavailable" catches those
too, and nothing else: py-amqp speaks only to the broker, whereas a Redis error may come from
the cache (CACHE_URL=rediscache://...), and kombu wraps the Redis broker's own.
"""

from __future__ import annotations

from kombu.exceptions import OperationalError

# A send that timed out may have reached the broker: said apart from a refused one.
from taskconsole.unsent import unanswered  # noqa: F401


def _broker_errors() -> tuple[type[BaseException], ...]:
    try:
        from amqp.exceptions import AMQPError
    except ImportError:  # py-amqp comes with kombu; a trimmed install may lack it
        return (OperationalError,)
    return (OperationalError, AMQPError)


BROKER_ERRORS = _broker_errors()
