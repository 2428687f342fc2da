"""Flower reads this file (its default --conf) from the directory it starts in.

Flower listens on every interface unless told otherwise; here it stays on localhost, so the
tutorial's `celery -A myproject flower --port=5555` is not open to the network. To expose it,
set FLOWER_ADDRESS and FLOWER_BASIC_AUTH (user:password), or put it behind the site's auth.
"""

import os

# Options set here override FLOWER_* environment variables, so only fill in what is unset.
if "FLOWER_ADDRESS" not in os.environ:
    address = "127.0.0.1"
