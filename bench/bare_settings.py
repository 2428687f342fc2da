"""Django for the bare baseline with the django-db result backend: results and nothing else."""

from __future__ import annotations

import environ

env = environ.Env()
SECRET_KEY = "bench"
USE_TZ = True
INSTALLED_APPS = ["django_celery_results"]
DATABASES = {"default": env.db("DATABASE_URL")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The same connection options as the product, so both write to the file the same way.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = 60
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
