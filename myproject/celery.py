import os
import warnings

from celery import Celery
from celery.exceptions import CPendingDeprecationWarning
from celery.signals import celeryd_after_setup, setup_logging

from operations.flower_guard import install_if_flower

# 设置环境变量 / Django settings for the `celery` command line
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")

# 实例化
# task_cls: every task that does not choose a delivery policy is at most once (early ack plus
# a claim on its id, so a redelivered message never runs it twice): see reliability/delivery.py.
# amqp: kombu's connections, with one Redis client per channel kept (see myproject/broker.py).
app = Celery(
    "myproject",
    task_cls="reliability.delivery:AtMostOnceTask",
    amqp="myproject.broker:AMQP",
)

# namespace='CELERY': every Celery option lives in Django settings, prefixed with CELERY_.
app.config_from_object("django.conf:settings", namespace="CELERY")

# 自动从Django的已注册app中发现任务 (each app's tasks.py)
app.autodiscover_tasks()

# `celery -A myproject flower`, from any directory: Flower listens on 127.0.0.1 unless told
# otherwise, and never outside localhost without authentication (operations/flower_guard.py).
install_if_flower()


@app.on_after_configure.connect
def read_django_settings_once(sender: Celery, source, **kwargs) -> None:
    """Keep the CELERY_ settings as a plain dict instead of asking Django on every lookup.

    Celery looks each option up under up to four names (prefixed, plain, old and new style) in
    every source, and a miss in Django's lazy settings object is an AttributeError turned into
    a KeyError: a few dozen microseconds for every delay(), a fifth of a bare publish (bench
    item 1). A test that overrides a CELERY_ setting (override_settings) updates the copy.
    Each option's lookup is then kept until a setting changes (myproject/celeryconf.py).
    """
    from django.conf import settings
    from django.core.signals import setting_changed

    from myproject.celeryconf import forget_everywhere, remember_lookups

    values = {name: getattr(settings, name) for name in dir(settings) if name.startswith("CELERY_")}
    _read_tutorial_scheduler_as_ours(values)
    for maps in (source.maps, source.defaults):
        for index, mapping in enumerate(maps):
            if getattr(mapping, "obj", None) is settings:
                maps[index] = values
    remember_lookups(source)

    def follow(setting: str, value, enter: bool, **_) -> None:
        if setting.startswith("CELERY_"):
            if hasattr(settings, setting):
                values[setting] = getattr(settings, setting)
                _read_tutorial_scheduler_as_ours(values)
            else:
                values.pop(setting, None)
            forget_everywhere()

    setting_changed.connect(follow, weak=False, dispatch_uid="myproject_celery_settings")


TUTORIAL_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
PROJECT_SCHEDULER = "operations.beat:DatabaseScheduler"


def _read_tutorial_scheduler_as_ours(values: dict) -> None:
    """The tutorial's CELERY_BEAT_SCHEDULER line means the project's subclass of that scheduler.

    It adds a leader lease (operations/beat.py): a reader who copies the tutorial's line and then
    starts beat in another terminal beside `make run`'s gets a beat that stands by, instead of a
    second one sending every slot again.
    """
    if values.get("CELERY_BEAT_SCHEDULER") == TUTORIAL_SCHEDULER:
        values["CELERY_BEAT_SCHEDULER"] = PROJECT_SCHEDULER


@celeryd_after_setup.connect
def quiet_chosen_setting_warnings(**kwargs) -> None:
    """Leave out the warning Celery repeats at every lost broker connection about a setting the
    project chose (CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS, its reasons in
    settings). Here, after Celery's logging set-up, which asks to show all of its warnings."""
    warnings.filterwarnings(
        "ignore",
        message=r"\s*In Celery 5\.1 we introduced an optional breaking change",
        category=CPendingDeprecationWarning,
    )


@setup_logging.connect
def config_loggers(*args, **kwargs) -> None:
    """Let workers and beat log through Django's LOGGING instead of Celery's own set-up."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


# 一个测试任务
@app.task(bind=True)
def debug_task(self):
    print(f"Request: {self.request!r}")
