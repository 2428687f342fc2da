"""The app's settings remember each lookup until a setting changes (myproject/celeryconf.py)."""

from __future__ import annotations

import pytest
from celery.app.utils import Settings
from django.test import override_settings

from myproject.celery import app as celery_app
from myproject.celeryconf import RememberingSettings


def _plain(conf: RememberingSettings) -> Settings:
    """The same sources read without remembering anything: what Celery itself would answer."""
    plain = Settings(conf.changes, conf.defaults, conf._keys, conf.prefix)
    plain.__dict__["key_t"] = conf.key_t
    return plain


NAMES = [
    "task_serializer",
    "result_backend",
    "task_default_queue",
    "broker_url",
    "task_publish_retry_policy",
    "worker_prefetch_multiplier",
    "result_extended",
    "task_annotations",
    "timezone",
]


def test_the_apps_settings_remember_and_answer_as_celery_does() -> None:
    conf = celery_app.conf
    assert isinstance(conf, RememberingSettings)
    plain = _plain(conf)
    for name in NAMES:
        assert conf[name] == plain[name]
        assert getattr(conf, name) == getattr(plain, name)
        assert conf.get(name) == plain.get(name)
        # The second answer comes from what the first found.
        assert name in conf.__dict__["_remembered"]
        assert conf[name] == plain[name]
    assert conf.find_value_for_key("extended", "result") is True
    assert conf.broker_url == plain.broker_url


def test_a_missing_option_raises_the_same_error_every_time() -> None:
    conf = celery_app.conf
    with pytest.raises(KeyError) as plain_error:
        _plain(conf)["no_such_option"]
    for _ in range(2):
        with pytest.raises(KeyError) as error:
            conf["no_such_option"]
        assert error.value.args == plain_error.value.args
    assert conf.get("no_such_option", "fallback") == "fallback"
    with pytest.raises(AttributeError):
        conf.no_such_option  # noqa: B018


def test_every_way_of_changing_a_setting_is_seen_at_once() -> None:
    conf = celery_app.conf
    queue = conf.task_default_queue
    extra_defaults = {"test_only_default": "from defaults"}
    try:
        conf.task_default_queue = "set-as-attribute"
        assert conf.task_default_queue == "set-as-attribute"
        conf["task_default_queue"] = "set-as-item"
        assert conf["task_default_queue"] == "set-as-item"
        conf.update(task_default_queue="updated")
        assert conf.task_default_queue == "updated"
        conf.update({"task_default_queue": "updated-from-a-dict"})
        assert conf.task_default_queue == "updated-from-a-dict"
        del conf["task_default_queue"]
        assert conf.task_default_queue == queue
        conf.setdefault("test_only_option", 1)
        assert conf.test_only_option == 1
        conf.pop("test_only_option")
        assert conf.get("test_only_option") is None
        conf.add_defaults(extra_defaults)
        assert conf.test_only_default == "from defaults"
        # Django settings the app reads (namespace CELERY_), overridden by a test.
        with override_settings(CELERY_TASK_DEFAULT_QUEUE="from-django"):
            assert conf.task_default_queue == "from-django"
        assert conf.task_default_queue == queue
    finally:
        conf.changes.pop("task_default_queue", None)
        conf.changes.pop("test_only_option", None)
        for maps in (conf.defaults, conf.maps):
            if any(m is extra_defaults for m in maps):
                maps.remove(extra_defaults)
        conf.forget()
    assert conf.get("test_only_default") is None
    assert conf.task_default_queue == queue


def test_a_copy_of_the_settings_remembers_on_its_own() -> None:
    conf = celery_app.conf
    copied = conf.copy()
    assert isinstance(copied, RememberingSettings)
    copied.task_default_queue = "only-in-the-copy"
    assert copied.task_default_queue == "only-in-the-copy"
    assert conf.task_default_queue != "only-in-the-copy"
    # Django's settings are a source the copy shares: overriding one reaches it too.
    assert copied.task_default_priority is None
    with override_settings(CELERY_TASK_DEFAULT_PRIORITY=7):
        assert (conf.task_default_priority, copied.task_default_priority) == (7, 7)
    assert (conf.task_default_priority, copied.task_default_priority) == (None, None)


def test_the_tutorials_scheduler_line_is_read_as_the_projects_subclass() -> None:
    """Copying the tutorial's CELERY_BEAT_SCHEDULER keeps the leader lease: a second beat in
    the tutorial's terminal stands by instead of sending every slot again."""
    from django_celery_beat.schedulers import DatabaseScheduler

    from operations.beat import DatabaseScheduler as LeasedScheduler

    assert issubclass(LeasedScheduler, DatabaseScheduler)
    tutorial = "django_celery_beat.schedulers:DatabaseScheduler"
    with override_settings(CELERY_BEAT_SCHEDULER=tutorial):
        assert celery_app.conf.beat_scheduler == "operations.beat:DatabaseScheduler"
    with override_settings(CELERY_BEAT_SCHEDULER="celery.beat:PersistentScheduler"):
        assert celery_app.conf.beat_scheduler == "celery.beat:PersistentScheduler"
    assert celery_app.conf.beat_scheduler == "operations.beat:DatabaseScheduler"
