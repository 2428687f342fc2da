"""Flower reads this file (its default --conf) from the directory it starts in: the repo root.

Flower on its own listens on every interface when no address is given. In this project it
stays on localhost wherever it starts: operations/flower_guard.py (installed by
myproject/celery.py for the `flower` sub-command) binds 127.0.0.1 when no address is given and
refuses to start on a non-loopback address without authentication; this file says the same for
the repo root. To expose Flower, set FLOWER_ADDRESS and FLOWER_BASIC_AUTH (user:password), or keep
it on 127.0.0.1 behind an authenticating proxy.
"""

import os
import sys

# Options set here override FLOWER_* environment variables, so only fill in what is unset.
if "FLOWER_ADDRESS" not in os.environ:
    address = "127.0.0.1"

# The guard: installed by the project's Celery plugin too (operations/celery_plugin.py), and
# here as well for a Flower started from an environment where the project is not installed (a
# plain `pip install flower` beside a checkout), which still reads this file. Flower runs this
# file with its own path in __file__; a console script's sys.path does not hold the working
# directory, so the project is put there first.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    from operations.flower_guard import install as _install_guard
except ImportError as _error:
    sys.exit(f"flowerconfig.py: cannot load the project's Flower guard ({_error}): not starting.")
else:
    _install_guard()
