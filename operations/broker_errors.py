"""What a failed publish raises.

kombu turns most broker failures into its OperationalError, but not all of them: on RabbitMQ
an unknown virtual host (py-amqp's NotAllowed) or refused credentials (AccessRefused) come
through as the client's own errors, and so can redis-py's. Code that answers "the broker is
unavailable" catches all of these, and nothing else.
"""

from __future__ import annotations

from kombu.exceptions import OperationalError


def _broker_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OperationalError]
    try:
        from amqp.exceptions import AMQPError
    except ImportError:  # py-amqp is kombu's; a trimmed install may lack it
        pass
    else:
        errors.append(AMQPError)
    try:
        from redis.exceptions import RedisError
    except ImportError:
        pass
    else:
        errors.append(RedisError)
    return tuple(errors)


BROKER_ERRORS = _broker_errors()
