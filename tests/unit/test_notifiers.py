"""The notifiers (``dslc_airflow.notify``) against a real SMTP server on loopback that requires a
login: what they send for a callback's context, that nothing is sent (or looked up) with no
address set, and that a notification that cannot be sent is logged and never raised.

The DAG paths that fire them run in tests/integration/test_notifications.py."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from dslc.settings import get_settings
from dslc_airflow import notify as notifiers
from tests.smtp_server import LOGIN, SENDER, SmtpServer
from tests.support import free_port

TO = "ml-team@example.com,oncall@example.com"


@pytest.fixture
def smtp(monkeypatch) -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", server.connection())
        monkeypatch.setenv("DSLC_NOTIFY_EMAILS", TO)
        monkeypatch.delenv("DSLC_SMTP_CONN_ID", raising=False)
        yield server


class FakeTI:
    """What the notifiers read of a task instance: ids, try, log link, XComs."""

    def __init__(self, task_id: str, xcoms: dict[tuple[str, str], Any] | None = None) -> None:
        self.dag_id, self.run_id, self.task_id = "train", "manual__2013-03-01", task_id
        self.try_number = 1
        self.xcoms = xcoms or {}

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcoms[(task_ids, key)]


def context(ti: FakeTI, exception: BaseException | None = None) -> dict[str, Any]:
    return {
        "ti": ti,
        "dag_run": SimpleNamespace(logical_date=dt.datetime(2013, 3, 1, tzinfo=dt.UTC)),
        "exception": exception,
    }


def test_a_failure_is_mailed_to_every_address_through_the_connection(smtp):
    from airflow.sdk.exceptions import AirflowFailException

    error = AirflowFailException("no published feature partitions in the window")
    notifiers.FailureNotifier()(context(FakeTI("assemble"), error))
    (got,) = smtp.wait_for(1)
    assert got.rcpt_tos == ["ml-team@example.com", "oncall@example.com"]
    assert got.login == LOGIN and got.mail_from == SENDER
    assert got.subject == "[dslc] failed: train task assemble (2013-03-01)"
    assert got.message["X-Dslc-Event"] == "failed"
    assert "no published feature partitions in the window" in got.body
    # The run's link: Airflow's [api] base_url when set, else the stack's address.
    assert 'href="http://127.0.0.1:8080/dags/train/runs/manual__2013-03-01"' in got.body
    assert (
        'href="http://127.0.0.1:8080/dags/train/runs/manual__2013-03-01/tasks/assemble'
        '?try_number=1"' in got.body
    )


def test_an_error_that_is_not_ours_is_named_by_its_type(smtp):
    notifiers.FailureNotifier()(context(FakeTI("train"), MemoryError("out of memory")))
    (got,) = smtp.wait_for(1)
    assert "MemoryError: out of memory" in got.body


def test_a_rolled_back_deploy_is_mailed_as_a_rollback(smtp):
    from airflow.sdk.exceptions import AirflowFailException

    from dslc.deploy import DeployError

    record = {
        "model": "flights_late",
        "version": "2",
        "target": "local",
        "stage": "rollout",
        "serving_before": "1",
        "error": "the service failed to load version 2",
        "rollback": {"ok": True, "service": "serving 1 again", "alias": "champion -> version 1"},
    }
    try:  # as no_retry_on raises it in the task
        try:
            raise DeployError("deploy of flights_late version 2 ... Rolled back", record)
        except DeployError as e:
            raise AirflowFailException(str(e)) from e
    except AirflowFailException as wrapped:
        error = wrapped
    notifiers.FailureNotifier()(context(FakeTI("deploy"), error))
    (got,) = smtp.wait_for(1)
    assert got.subject == (
        "[dslc] deploy rolled back: flights_late v2 failed at the rollout on local; back on v1"
    )
    assert got.message["X-Dslc-Event"] == "rolled_back"


def test_promote_mails_the_decision_with_the_facts_of_the_run(smtp):
    evaluated = {
        "challenger": {"roc_auc": 0.74},
        "champion": {"roc_auc": 0.72},
        "champion_version": "1",
    }
    assembled = {
        "config": {"model_name": "flights_late"},
        "window": {"first": "2013-01-01", "last": "2013-01-21", "days": 21},
        "lineage": {"dslc.trigger_reason": "weekly"},
    }
    promoted = {"version": "2", "promote": True, "reason": "ok", "previous_champion": "1"}
    ti = FakeTI(
        "promote",
        {
            ("promote", "return_value"): promoted,
            ("evaluate", "return_value"): evaluated,
            ("assemble", "return_value"): assembled,
        },
    )
    notifiers.PromotionNotifier()(context(ti))
    (got,) = smtp.wait_for(1)
    assert got.subject == (
        "[dslc] promoted: flights_late v2 is the champion (ROC AUC 0.7400 vs 0.7200)"
    )
    assert "2013-01-01..2013-01-21 (21 days)" in got.body and "weekly" in got.body
    assert "/#/models/flights_late/versions/2" in got.body


def test_no_address_sends_nothing_and_looks_nothing_up(smtp, monkeypatch, caplog):
    monkeypatch.setenv("DSLC_NOTIFY_EMAILS", "")
    # A connection id that does not exist would be a warning if anything looked it up.
    monkeypatch.setenv("DSLC_SMTP_CONN_ID", "no_such_connection")
    caplog.set_level(logging.INFO)
    notifiers.FailureNotifier()(context(FakeTI("assemble"), ValueError("x")))
    assert smtp.wait_for(1, timeout=0.5) == []
    assert "notification" not in caplog.text and "e-mailed" not in caplog.text

    # Negative control: with an address, the missing connection is reported.
    monkeypatch.setenv("DSLC_NOTIFY_EMAILS", TO)
    get_settings.cache_clear()
    notifiers.FailureNotifier()(context(FakeTI("assemble"), ValueError("x")))
    assert "FailureNotifier: notification not sent (the run is not affected)" in caplog.text


@pytest.mark.parametrize("fault", ["server down", "wrong password", "no sender"])
def test_a_notification_that_cannot_be_sent_is_logged_never_raised(
    smtp, monkeypatch, caplog, fault
):
    if fault == "server down":
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp.connection(port=free_port()))
    elif fault == "wrong password":
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp.connection(password="not-it"))
    else:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp.connection(from_email=""))
    caplog.set_level(logging.INFO)
    notifiers.FailureNotifier()(context(FakeTI("assemble"), ValueError("x")))  # does not raise
    assert smtp.received == []
    warning = "FailureNotifier: notification not sent (the run is not affected): "
    assert warning in caplog.text
    if fault == "wrong password":
        assert smtp.refused_logins >= 1  # smtplib tries each mechanism the server offers
        assert "not-it" not in caplog.text and smtp.password not in caplog.text
    if fault == "no sender":
        assert "the SMTP connection 'smtp_default' names no sender: set its from_email" in (
            caplog.text
        )


def test_reconcile_mails_only_when_it_rolled_a_deploy_back(smtp):
    quiet = FakeTI("reconcile_deployment", {("reconcile_deployment", "return_value"): {}})
    notifiers.ReconcileNotifier()(context(quiet))
    assert smtp.wait_for(1, timeout=0.5) == []
    record = {
        "model": "m",
        "version": "3",
        "target": "local",
        "stage": "smoke test",
        "previous": "2",
        "rollback": {"ok": True},
    }
    rolled = FakeTI(
        "reconcile_deployment",
        {("reconcile_deployment", "return_value"): {"rolled_back": record}},
    )
    notifiers.ReconcileNotifier()(context(rolled))
    (got,) = smtp.wait_for(1)
    assert got.subject.startswith("[dslc] deploy rolled back: m v3 failed at the smoke test")
    assert "by drift_monitor&#x27;s reconcile (the deploy process had died half-way)" in got.body
