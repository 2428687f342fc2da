from __future__ import annotations

import pytest
from amqp.exceptions import NotAllowed
from django.test import Client
from kombu.exceptions import OperationalError

from maintenance import summaries, tasks
from maintenance.models import Job, MaintenanceRun, RunStatus
from maintenance.schedules import sync_schedules

from .helpers import make_user

pytestmark = pytest.mark.django_db

INDEX = "/maintenance/"
RUN_BACKUP = "/maintenance/run/backup_database/"
ADMIN_CHANGELIST = "/admin/maintenance/maintenancerun/"


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, tuple, dict]]:
    """Messages the jobs would have published, instead of publishing them."""
    calls: list[tuple[str, tuple, dict]] = []
    for job, task in tasks.TASKS.items():
        monkeypatch.setattr(
            task,
            "apply_async",
            lambda args=(), job=job, **options: calls.append((job, args, options)),
        )
    return calls


def login(client: Client, *perms: str, **fields) -> Client:
    client.force_login(make_user("operator", *perms, **fields))
    return client


def test_the_page_needs_a_login(client: Client) -> None:
    response = client.get(INDEX)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_page_needs_the_view_permission(client: Client) -> None:
    assert login(client).get(INDEX).status_code == 403


def test_the_page_lists_runs_and_schedules_without_buttons_for_viewers(client: Client) -> None:
    sync_schedules()
    MaintenanceRun.objects.create(
        job=Job.BACKUP_DATABASE, status=RunStatus.SUCCEEDED, summary="Backed up to somewhere"
    )
    response = login(client, "maintenance.view_maintenancerun").get(INDEX)
    page = response.content.decode()
    assert response.status_code == 200
    assert "Backed up to somewhere" in page
    assert "maintenance.backup-database" in page
    assert 'action="/maintenance/run/' not in page


def test_a_run_summary_written_in_english_reads_in_the_readers_language(client: Client) -> None:
    from django.utils import translation

    from maintenance import services

    with translation.override("en"):  # a worker writing in English
        run = services.run_job(Job.CLEAR_EXPIRED)
    viewer = login(client, "maintenance.view_maintenancerun")
    page = viewer.get(INDEX, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "已删除 0 个过期会话。" in page
    assert run.summary not in page
    assert run.summary in viewer.get(INDEX, HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_the_schedules_read_in_the_readers_language(client: Client) -> None:
    sync_schedules()
    viewer = login(client, "maintenance.view_maintenancerun")
    page = viewer.get(INDEX, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "每小时：删除过期的会话和过期的数据库缓存条目。" in page
    assert "Hourly: delete expired sessions" not in page
    english = viewer.get(INDEX, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Hourly: delete expired sessions" in english


def test_the_page_says_when_schedules_are_not_synced(admin_client: Client) -> None:
    assert "sync_schedules" in admin_client.get(INDEX).content.decode()


def test_operators_get_a_button_per_job(admin_client: Client) -> None:
    page = admin_client.get(INDEX).content.decode()
    for job in Job:
        assert f'action="/maintenance/run/{job.value}/"' in page
    assert "csrfmiddlewaretoken" in page


def test_running_a_job_needs_the_run_permission(client: Client, sent) -> None:
    login(client, "maintenance.view_maintenancerun")
    assert client.post(RUN_BACKUP).status_code == 403
    assert not MaintenanceRun.objects.exists()
    assert sent == []


def test_running_a_job_takes_post_only(admin_client: Client, sent) -> None:
    assert admin_client.get(RUN_BACKUP).status_code == 405
    assert not MaintenanceRun.objects.exists()


def test_a_run_is_queued_and_sent_only_after_commit(
    client: Client, sent, django_capture_on_commit_callbacks
) -> None:
    user = make_user("operator", "maintenance.view_maintenancerun", "maintenance.run_maintenance")
    client.force_login(user)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(RUN_BACKUP, follow=True)
        run = MaintenanceRun.objects.get()
        assert sent == []  # the row is not committed yet: nothing is published
    assert len(callbacks) == 1
    callbacks[0]()

    assert sent == [(Job.BACKUP_DATABASE, (run.pk,), {"task_id": run.task_id})]
    assert run.status == RunStatus.QUEUED
    assert run.requested_by == user
    assert f"run #{run.pk}" in response.content.decode()


def test_an_unknown_job_is_refused_with_a_message(admin_client: Client, sent) -> None:
    response = admin_client.post("/maintenance/run/drop_database/", follow=True)
    assert "no maintenance job called “drop_database”" in response.content.decode()
    assert not MaintenanceRun.objects.exists()
    assert sent == []


@pytest.mark.parametrize(
    "refusal",
    [
        OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        NotAllowed("NOT_ALLOWED - vhost nosuchvhost not found"),
    ],
    ids=["kombu", "unknown-vhost"],
)
@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_fails_the_run_and_answers_503(admin_user, monkeypatch, refusal) -> None:
    def broker_down(*args, **kwargs):
        raise refusal

    monkeypatch.setattr(tasks.prune_results, "apply_async", broker_down)
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    response = client.post("/maintenance/run/prune_results/")
    assert response.status_code == 503
    run = MaintenanceRun.objects.get()
    assert run.status == RunStatus.FAILED
    assert "broker did not answer" in run.summary
    assert run.details["failure"] == summaries.NOT_STARTED


@pytest.mark.django_db(transaction=True)
def test_a_run_the_broker_refused_reads_in_each_readers_language(
    admin_user, refusing_broker
) -> None:
    # Asked for in Chinese, while the broker refuses connections for real.
    requester = Client(raise_request_exception=False, HTTP_ACCEPT_LANGUAGE="zh-hans")
    requester.force_login(admin_user)
    with refusing_broker():
        response = requester.post("/maintenance/run/prune_results/")
    assert response.status_code == 503
    run = MaintenanceRun.objects.get()
    assert run.status == RunStatus.FAILED
    # Stored as a worker stores summaries (the site's language), with what the readers'
    # versions are made from; the broker's own words are kept apart, for the admin.
    assert run.summary == "Not started: the task broker did not answer. Please try again."
    assert run.details["failure"] == summaries.NOT_STARTED
    assert "Connection refused" in run.details["error"]

    english = Client(HTTP_ACCEPT_LANGUAGE="en")
    english.force_login(admin_user)
    assert run.summary in english.get(INDEX).content.decode()
    page = requester.get(INDEX).content.decode()
    assert "未启动：消息代理没有响应。请重试。" in page
    assert "Not started" not in page
    assert "Connection refused" not in page


def test_the_admin_changelist_has_a_run_button_per_job(admin_client: Client) -> None:
    page = admin_client.get(ADMIN_CHANGELIST).content.decode()
    for job in Job:
        assert f'action="{ADMIN_CHANGELIST}run/{job.value}/"' in page


def test_the_admin_button_queues_a_run(
    admin_client: Client, admin_user, sent, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{ADMIN_CHANGELIST}run/clear_expired/", follow=True)
    run = MaintenanceRun.objects.get()
    assert run.job == Job.CLEAR_EXPIRED
    assert run.requested_by == admin_user
    assert sent == [(Job.CLEAR_EXPIRED, (run.pk,), {"task_id": run.task_id})]
    assert f"run #{run.pk}" in response.content.decode()


def test_the_admin_button_needs_the_run_permission(client: Client, sent) -> None:
    login(client, "maintenance.view_maintenancerun", is_staff=True)
    assert client.post(f"{ADMIN_CHANGELIST}run/clear_expired/").status_code == 403
    assert client.get(ADMIN_CHANGELIST).status_code == 200
    assert "run/clear_expired/" not in client.get(ADMIN_CHANGELIST).content.decode()
    assert sent == []


def test_the_admin_action_runs_the_selected_jobs_again(
    admin_client: Client, sent, django_capture_on_commit_callbacks
) -> None:
    old = [
        MaintenanceRun.objects.create(job=Job.PRUNE_RESULTS, status=RunStatus.FAILED),
        MaintenanceRun.objects.create(job=Job.PRUNE_RESULTS, status=RunStatus.SUCCEEDED),
        MaintenanceRun.objects.create(job=Job.BACKUP_DATABASE, status=RunStatus.FAILED),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            ADMIN_CHANGELIST,
            {"action": "run_again", "_selected_action": [run.pk for run in old]},
        )
    new = MaintenanceRun.objects.exclude(pk__in=[run.pk for run in old])
    assert sorted(new.values_list("job", flat=True)) == [Job.BACKUP_DATABASE, Job.PRUNE_RESULTS]
    assert sorted(job for job, _args, _options in sent) == [
        Job.BACKUP_DATABASE,
        Job.PRUNE_RESULTS,
    ]


def test_runs_are_read_only_in_the_admin(admin_client: Client) -> None:
    run = MaintenanceRun.objects.create(job=Job.CLEAR_EXPIRED, summary="done")
    assert admin_client.get(f"{ADMIN_CHANGELIST}add/").status_code == 403
    page = admin_client.get(f"{ADMIN_CHANGELIST}{run.pk}/change/")
    assert page.status_code == 200
    assert 'name="summary"' not in page.content.decode()
