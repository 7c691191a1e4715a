"""The notification messages (``dslc.notify``): what each event's e-mail says, from the facts the
tasks hand each other, and the DSLC_NOTIFY_EMAILS setting."""

from __future__ import annotations

import pytest

from dslc import notify
from dslc.errors import ConfigError
from dslc.settings import Settings

BASE = "http://airflow.example.com:8080/"
TRAIN_RUN = notify.Run(
    "train",
    "manual__2013-03-01T00:00:00+00:00",
    None,
    notify.run_url(BASE, "train", "manual__2013-03-01T00:00:00+00:00"),
)
EVALUATED = {
    "run_id": "abc",
    "challenger": {"roc_auc": 0.73124, "pr_auc": 0.5012, "log_loss": 0.4901, "brier": 0.1612},
    "champion": {"roc_auc": 0.71019, "pr_auc": 0.48, "log_loss": 0.5, "brier": 0.17},
    "champion_version": "3",
    "champion_note": None,
    "collapsed_slices": [],
}


# -- the setting ---------------------------------------------------------------------------------


def test_addresses_are_comma_separated_trimmed_and_deduplicated() -> None:
    assert notify.parse_addresses(" a@example.com,b@example.com ; a@example.com,, ") == [
        "a@example.com",
        "b@example.com",
    ]
    assert notify.parse_addresses("") == [] and notify.parse_addresses(None) == []


@pytest.mark.parametrize("bad", ["ml-team", "a@b c@d", "<a@example.com>", "@example.com"])
def test_an_entry_that_is_not_an_address_is_named_with_the_fix(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"DSLC_NOTIFY_EMAILS has '.*', which is not an e-mail"):
        notify.parse_addresses(f"ok@example.com,{bad}")


def test_notifications_are_off_by_default_and_on_with_addresses(monkeypatch) -> None:
    monkeypatch.delenv("DSLC_NOTIFY_EMAILS", raising=False)
    monkeypatch.delenv("DSLC_SMTP_CONN_ID", raising=False)
    s = Settings()
    assert s.notify_recipients == [] and s.smtp_conn_id == "smtp_default"
    monkeypatch.setenv("DSLC_NOTIFY_EMAILS", "ml@example.com, oncall@example.com")
    monkeypatch.setenv("DSLC_SMTP_CONN_ID", "smtp_alerts")
    s = Settings()
    assert s.notify_recipients == ["ml@example.com", "oncall@example.com"]
    assert s.smtp_conn_id == "smtp_alerts"
    monkeypatch.setenv("DSLC_NOTIFY_EMAILS", "ml-team")
    with pytest.raises(ValueError, match="or leave it empty to send nothing"):
        Settings()


def test_run_url_points_at_the_run_in_the_airflow_ui_with_the_id_quoted() -> None:
    assert notify.run_url(BASE, "train", "manual__2013-03-01T00:00:00+00:00") == (
        "http://airflow.example.com:8080/dags/train/runs/manual__2013-03-01T00%3A00%3A00%2B00%3A00"
    )
    assert notify.run_url("http://h", "deploy", "r1", "deploy") == (
        "http://h/dags/deploy/runs/r1/tasks/deploy"
    )


# -- the messages --------------------------------------------------------------------------------


def facts(message: notify.Message) -> dict[str, str]:
    return dict(message.facts)


def test_retrain_triggered_says_why_what_drifted_and_where_the_train_run_is() -> None:
    run = notify.Run("drift_monitor", "scheduled__2013-03-05T00:00:00+00:00", "2013-03-05", "u")
    drifted = [f"f{i}:psi=0.{9 - i}" for i in range(7)]
    conf = {
        "reason": "drift_monitor 2013-03-05: data drift in 2 consecutive windows (champion v3)",
        "window_end": "2013-03-05",
        "window_days": 60,
        "report_uri": "s3://lake/monitoring/drift/ds=2013-03-05/report.html",
        "drifted_features": drifted,
        "champion_version": "3",
        "drift_window": "2013-02-27..2013-03-05",
    }
    m = notify.retrain_triggered(
        run,
        model="flights_late",
        conf=conf,
        train_run_id="drift__2013-03-05__v3",
        train_run_url="http://a/dags/train/runs/drift__2013-03-05__v3",
    )
    assert m.event == "retrain_triggered"
    assert m.subject == "[dslc] retrain triggered: flights_late v3 drifted (2013-03-05)"
    assert conf["reason"] in m.summary
    f = facts(m)
    assert f["Model"] == "flights_late version 3 (the champion)"
    assert (
        f["Most drifted"] == "f0:psi=0.9, f1:psi=0.8, f2:psi=0.7, f3:psi=0.6, f4:psi=0.5 and 2 more"
    )
    assert f["Retraining"] == ("train run drift__2013-03-05__v3: the 60 days ending 2013-03-05")
    assert f["Drift window"] == "2013-02-27..2013-03-05"
    assert dict(m.links)["The train run"] == "http://a/dags/train/runs/drift__2013-03-05__v3"
    # The HTML links what a browser can open; the s3:// report is shown as text.
    body = m.html()
    assert '<a href="http://a/dags/train/runs/drift__2013-03-05__v3">The train run</a>' in body
    assert "<li>The drift report: s3://lake/monitoring/drift/ds=2013-03-05/report.html</li>" in body


def test_promotion_names_the_new_champion_and_the_auc_against_the_old_one() -> None:
    promoted = {
        "version": "4",
        "promote": True,
        "reason": "holdout ROC AUC 0.7312 vs champion v3 0.7102 (tolerance 0.01, floor 0.6)",
        "previous_champion": "3",
    }
    m = notify.promotion(
        TRAIN_RUN,
        model="flights_late",
        promoted=promoted,
        evaluated=EVALUATED,
        window="2013-01-01..2013-03-01 (60 days)",
        trigger_reason="drift_monitor 2013-03-01: data drift",
        model_url="http://mlflow:5000/#/models/flights_late/versions/4",
    )
    assert m.event == "promoted"
    assert m.subject == (
        "[dslc] promoted: flights_late v4 is the champion (ROC AUC 0.7312 vs 0.7102)"
    )
    assert m.summary == (
        "flights_late version 4 passed the promotion gate and is now the champion "
        "(previous_champion: version 3)."
    )
    f = facts(m)
    assert f["Challenger (holdout)"] == (
        "ROC AUC 0.7312, PR AUC 0.5012, log loss 0.4901, Brier 0.1612"
    )
    assert f["Champion (same holdout)"].startswith("version 3: ROC AUC 0.7102")
    assert f["ROC AUC difference"] == "+0.0211 (challenger minus champion)"
    assert f["Training window"] == "2013-01-01..2013-03-01 (60 days)"
    assert f["Why this run"] == "drift_monitor 2013-03-01: data drift"
    assert f["DAG run"] == "train / manual__2013-03-01T00:00:00+00:00"
    assert "Collapsed slices" not in f  # empty facts are left out
    assert dict(m.links) == {
        "The model version in MLflow": "http://mlflow:5000/#/models/flights_late/versions/4",
        "The train run": TRAIN_RUN.url,
    }


def test_rejection_says_the_version_stays_registered_and_how_to_serve_it_anyway() -> None:
    promoted = {
        "version": "5",
        "promote": False,
        "reason": "holdout ROC AUC 0.6500 is worse than the champion's 0.7102 by more than the "
        "tolerance 0.0100",
        "previous_champion": "3",
    }
    evaluated = {**EVALUATED, "challenger": {"roc_auc": 0.65}, "collapsed_slices": ["origin=JFK"]}
    m = notify.promotion(TRAIN_RUN, model="flights_late", promoted=promoted, evaluated=evaluated)
    assert m.event == "rejected"
    assert m.subject == (
        "[dslc] rejected: flights_late v5 stays registered, not promoted (ROC AUC 0.6500 vs 0.7102)"
    )
    assert promoted["reason"] in m.summary
    assert "version 3 stays the champion and nothing is deployed" in m.summary
    assert "trigger the `deploy` DAG with version=5" in m.next_step
    f = facts(m)
    assert f["ROC AUC difference"] == "-0.0602 (challenger minus champion)"
    assert f["Collapsed slices"] == "origin=JFK"


def test_a_first_model_is_compared_with_no_champion() -> None:
    promoted = {"version": "1", "promote": True, "reason": "r", "previous_champion": None}
    evaluated = {**EVALUATED, "champion": None, "champion_version": None}
    m = notify.promotion(TRAIN_RUN, model="m", promoted=promoted, evaluated=evaluated)
    assert (
        m.subject
        == "[dslc] promoted: m v1 is the champion (ROC AUC 0.7312, no champion to compare)"
    )
    assert m.summary == "m version 1 passed the promotion gate and is now the champion."
    assert facts(m)["Champion (same holdout)"] == "none yet"
    assert "ROC AUC difference" not in facts(m)


RECORD = {
    "model": "flights_late",
    "version": "5",
    "previous": "4",
    "target": "local",
    "endpoint": "http://127.0.0.1:8000",
    "actor": "admin via deploy/manual__x",
    "reason": "try v5",
    "status": "rolled_back",
    "stage": "smoke test",
    "error": "SmokeTestError: 12 of 200 holdout rows differ from the offline predictions",
    "serving_before": "4",
    "smoke": {
        "passed": False,
        "rows": 200,
        "mismatches": 12,
        "max_abs_diff": 0.25,
        "version_seen": "5",
    },
    "rollback": {
        "ok": True,
        "service": "the service reloaded version 4",
        "alias": "champion -> version 4",
    },
    "record_uri": "file:///lake/deployments/flights_late/20130301T000000Z-v5.json",
}


def test_rollback_says_what_failed_why_and_what_serves_now() -> None:
    run = notify.Run("deploy", "manual__x", None, "http://a/dags/deploy/runs/manual__x")
    m = notify.rollback(run, task_id="deploy", record=RECORD)
    assert m.event == "rolled_back"
    assert m.subject == (
        "[dslc] deploy rolled back: flights_late v5 failed at the smoke test on local; back on v4"
    )
    f = facts(m)
    assert f["Cause"] == RECORD["error"]
    assert f["Smoke test"] == (
        "FAILED: 200 rows, 12 mismatches, max difference 0.25, answered by version 5"
    )
    assert f["Service"] == "the service reloaded version 4"
    assert f["Alias"] == "champion -> version 4"
    assert f["Record"] == RECORD["record_uri"]
    assert "deploy version 5 again with the `deploy` DAG" in m.next_step


def test_a_rollback_that_failed_asks_for_a_check_by_hand() -> None:
    record = {
        **RECORD,
        "status": "rollback_failed",
        "serving_before": None,
        "rollback": {
            "ok": False,
            "service": "ROLLBACK FAILED: ConnectError: refused",
            "alias": "x",
        },
    }
    m = notify.rollback(notify.Run("train", "r"), task_id="deploy", record=record, how=" by X")
    assert m.event == "rollback_failed"
    assert m.subject == "[dslc] ROLLBACK INCOMPLETE: flights_late v5 on local: check by hand"
    assert "rolling it back by X failed too" in m.summary
    assert facts(m)["Service"] == "ROLLBACK FAILED: ConnectError: refused"


def test_failure_names_the_task_the_run_and_the_error_with_links() -> None:
    run = notify.Run("drift_monitor", "scheduled__2013-03-05", "2013-03-05", "http://a/run")
    m = notify.failure(
        run,
        task_id="wait_for_features",
        error="no features for 2013-03-05 at file:///lake/features/flights/ds=2013-03-05",
        try_number=1,
        log_url="http://a/log",
    )
    assert m.event == "failed"
    assert m.subject == "[dslc] failed: drift_monitor task wait_for_features (2013-03-05)"
    assert m.summary.startswith("Task wait_for_features of drift_monitor run scheduled__2013-03-05")
    assert facts(m)["Error"].startswith("no features for 2013-03-05")
    assert dict(m.links) == {"The task log": "http://a/log", "The run": "http://a/run"}
    # A run without a logical date is named by its id.
    m = notify.failure(notify.Run("train", "manual__1"), task_id="assemble", error="e")
    assert m.subject == "[dslc] failed: train task assemble (manual__1)"


def test_a_long_error_is_cut_and_markup_in_it_is_escaped() -> None:
    m = notify.failure(TRAIN_RUN, task_id="t", error="<script>x</script> {{ ti }}" + "y" * 5000)
    error = facts(m)["Error"]
    assert len(error) <= notify.MAX_ERROR_CHARS and error.endswith("(5027 characters)")
    body = m.html()
    assert "<script>" not in body and "&lt;script&gt;x&lt;/script&gt; {{ ti }}" in body
    assert m.text().startswith(m.summary) and "Error: <script>" in m.text()
