"""E-mail notifications, end to end: the DAGs run with ``dag.test()`` against the real lake and
MLflow of the other integration tests, and send through Airflow's SMTP provider to a real SMTP
server on loopback (aiosmtpd) that requires a login; the password comes from the connection
``AIRFLOW_CONN_SMTP_DEFAULT``.

What is checked is what a user gets: who receives which message (subject, the facts, the link
to the run) for a promotion, a rejected challenger, a failed run, a drift-triggered retrain and
a rolled-back deploy; that with no address set nothing is sent; that a notification that
cannot be sent leaves the run as it was; and that the SMTP password is in no log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from dslc.lake import Lake
from tests.integration import test_deploy, test_drift_monitor_dag
from tests.integration.conftest import ROOT, TRAIN_LAST_DAY
from tests.integration.test_deploy import Models
from tests.integration.test_drift_monitor_dag import SHIFTED, publish, run_day, shifted_day
from tests.smtp_server import LOGIN, SENDER, Received, SmtpServer

pytestmark = pytest.mark.integration

# The fixtures of the drift_monitor and deploy tests, reused (pytest finds them by name here).
champion, drift = test_drift_monitor_dag.champion, test_drift_monitor_dag.drift
models, env, server = test_deploy.models, test_deploy.env, test_deploy.server
deploy_dag = test_deploy.deploy_dag

TO = ["ml-team@example.com", "oncall@example.com"]
WINDOW = {"window_end": TRAIN_LAST_DAY, "window_days": 21, "max_iter": 50, "deploy": False}
AIRFLOW = "http://127.0.0.1:8080"  # no [api] base_url here: the stack's address


@pytest.fixture
def smtp(monkeypatch) -> Iterator[SmtpServer]:
    """The SMTP server, its connection in the environment, notifications on for TO."""
    from dslc.settings import get_settings

    with SmtpServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", server.connection())
        monkeypatch.setenv("DSLC_NOTIFY_EMAILS", ", ".join(TO))
        monkeypatch.delenv("DSLC_SMTP_CONN_ID", raising=False)
        get_settings.cache_clear()
        yield server
    get_settings.cache_clear()


def url(dag_id: str, run_id: str) -> str:
    return f"{AIRFLOW}/dags/{dag_id}/runs/{quote(run_id, safe='')}"


def sent_to_all(got: Received) -> None:
    assert got.rcpt_tos == TO and got.mail_from == SENDER and got.login == LOGIN


def assert_password_in_no_log(smtp: SmtpServer, capfd, caplog) -> None:
    """Neither the task logs (printed by dag.test) nor the raw log records hold the SMTP
    password, and (the control) the masker that writes task logs knows it: had a task logged
    it, it would read ***."""
    from airflow.sdk._shared.secrets_masker import redact

    out, err = capfd.readouterr()
    for where, text in (("stdout", out), ("stderr", err), ("log records", caplog.text)):
        assert smtp.password not in text, where
    assert redact(f"password {smtp.password}") == "password ***"


# -- train: promoted, rejected, failed -----------------------------------------------------------


@pytest.fixture
def train(smtp, airflow_db: None, feature_lake: Lake, mlflow_server, monkeypatch):
    """The train DAG on the session's lake and MLflow, with a fresh model name."""
    import uuid

    from airflow.dag_processing.dagbag import DagBag

    from dslc.settings import get_settings

    name = f"flights_late_notify_{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("DSLC_LAKE_URL", feature_lake.url)
    monkeypatch.setenv("DSLC_MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("DSLC_MODEL_NAME", name)
    monkeypatch.setenv("DSLC_TRAIN_MIN_ROWS", "1000")
    get_settings.cache_clear()
    bag = DagBag(str(ROOT / "dags" / "train.py"))
    assert not bag.import_errors, bag.import_errors
    return name, bag.dags["train"]


def run_train(dag: Any, **conf: Any) -> tuple[str, dict[str, str], str]:
    dr = dag.test(run_conf={**WINDOW, **conf})
    return str(dr.state), {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}, dr.run_id


def test_train_mails_a_promotion_then_a_rejection_and_never_fails_for_a_mail(
    smtp, train, monkeypatch, mlflow_server, capfd, caplog
):
    from dslc.settings import get_settings

    name, dag = train
    caplog.set_level(logging.INFO)
    state, tasks, run_id = run_train(dag, reason="first champion")
    assert state == "success", tasks
    (got,) = smtp.wait_for(1)
    sent_to_all(got)
    assert got.message["X-Dslc-Event"] == "promoted"
    assert got.subject.startswith(f"[dslc] promoted: {name} v1 is the champion (ROC AUC 0.")
    assert got.subject.endswith(", no champion to compare)")
    body = got.body
    assert f"{name} version 1 passed the promotion gate and is now the champion." in body
    assert "2013-01-01..2013-01-21 (21 days)" in body and "first champion" in body
    assert f'href="{url("train", run_id)}"' in body
    assert f'href="{mlflow_server.url}/#/models/{name}/versions/1"' in body

    # Same window and params, a floor no model reaches: rejected, v1 stays the champion.
    monkeypatch.setenv("DSLC_PROMOTE_AUC_FLOOR", "0.99")
    get_settings.cache_clear()
    state, tasks, run_id = run_train(dag, reason="second")
    assert state == "success" and tasks["promote"] == "success", tasks
    assert len(smtp.wait_for(2)) == 2
    got = smtp.received[1]
    sent_to_all(got)
    assert got.message["X-Dslc-Event"] == "rejected"
    assert got.subject.startswith(f"[dslc] rejected: {name} v2 stays registered, not promoted")
    auc = got.subject.split("(ROC AUC ")[1].split(" vs ")
    assert auc[0] == auc[1].rstrip(")")  # deterministic: the same AUC as the champion's
    assert "is below the floor 0.9900" in got.body
    assert "version 1 stays the champion and nothing is deployed" in got.body
    assert "trigger the `deploy` DAG with version=2" in got.body
    assert_password_in_no_log(smtp, capfd, caplog)

    # The SMTP server refuses the login: the run goes on exactly as without notifications.
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp.connection(password="wrong-pw"))
    state, tasks, _ = run_train(dag, reason="third")
    assert state == "success" and tasks["promote"] == "success", tasks
    assert len(smtp.received) == 2 and smtp.refused_logins >= 1
    assert "PromotionNotifier: notification not sent (the run is not affected): " in caplog.text
    assert "SMTPAuthenticationError" in caplog.text


def test_a_failed_run_is_mailed_and_with_no_address_nothing_is_sent(
    smtp, train, monkeypatch, capfd, caplog
):
    from dslc.settings import get_settings

    _, dag = train
    state, tasks, run_id = run_train(dag, window_end="2013-06-30", window_days=10)
    assert state == "failed" and tasks["assemble"] == "failed", tasks
    (got,) = smtp.wait_for(1)
    sent_to_all(got)
    assert got.message["X-Dslc-Event"] == "failed"
    day = run_id.split("__")[1][:10]  # dag.test's run has a logical date: the day
    assert got.subject == f"[dslc] failed: train task assemble ({day})"
    body = got.body
    assert f"Task assemble of train run {run_id} failed on try 1" in body
    assert "no published feature partitions in the window 2013-06-21..2013-06-30" in body
    assert f'href="{url("train", run_id)}/tasks/assemble?try_number=1"' in body  # the log
    assert_password_in_no_log(smtp, capfd, caplog)

    # The default: no address, nothing sent, the run fails the same way.
    monkeypatch.setenv("DSLC_NOTIFY_EMAILS", "")
    get_settings.cache_clear()
    state, tasks, _ = run_train(dag, window_end="2013-06-30", window_days=10)
    assert state == "failed" and tasks["assemble"] == "failed", tasks
    assert smtp.wait_for(2, timeout=2) == [got]


# -- drift_monitor: a triggered retrain ----------------------------------------------------------


def test_a_drift_triggered_retrain_is_mailed_with_the_reason_and_the_train_run(
    smtp, drift, champion, capfd, caplog
):
    lake, dag = drift
    publish(lake, shifted_day(champion["rows"], SHIFTED, seed=2))
    state, tasks = run_day(dag, SHIFTED, caplog, persistence=1)
    assert state == "success" and tasks["trigger_retraining"] == "success", tasks
    (got,) = smtp.wait_for(1)  # one message: reconcile found nothing to roll back
    sent_to_all(got)
    version = champion["version"]
    assert got.message["X-Dslc-Event"] == "retrain_triggered"
    assert got.subject == (
        f"[dslc] retrain triggered: {champion['name']} v{version} drifted ({SHIFTED})"
    )
    body = got.body
    assert f"drift_monitor {SHIFTED}: data drift in 1 consecutive" in body
    assert "temp:psi=" in body  # among the most drifted
    train_run = f"drift__{SHIFTED}__v{version}"
    assert f"train run {train_run}: the 60 days ending {SHIFTED}" in body
    assert f'href="{url("train", train_run)}"' in body
    assert f"/monitoring/drift/ds={SHIFTED}/report.html" in body
    assert_password_in_no_log(smtp, capfd, caplog)


# -- deploy: a rollback --------------------------------------------------------------------------


def test_a_rolled_back_deploy_is_mailed_as_a_rollback_not_a_bare_failure(
    smtp, deploy_dag, models: Models, server, monkeypatch, capfd, caplog
):
    from dslc.settings import get_settings

    monkeypatch.setenv("DSLC_SERVING_URL", server.url)
    get_settings.cache_clear()
    v1 = models.good[0]
    dr = deploy_dag.test(run_conf={"version": int(models.corrupt), "target": "local"})
    assert str(dr.state) == "failed"
    (got,) = smtp.wait_for(1)
    sent_to_all(got)
    assert got.message["X-Dslc-Event"] == "rolled_back"
    assert got.subject == (
        f"[dslc] deploy rolled back: {models.name} v{models.corrupt} failed at the rollout on "
        f"local; back on v{v1}"
    )
    body = got.body
    assert "the service failed to load" in body
    assert f"the service still serves version {v1}" in body
    assert f"champion -&gt; version {v1}" in body
    assert f"/deployments/{models.name}/" in body  # the record
    assert f'href="{url("deploy", dr.run_id)}"' in body
    assert server.get("/ready")[1]["version"] == v1
    assert_password_in_no_log(smtp, capfd, caplog)
