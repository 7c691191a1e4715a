"""
### drift_monitor: is the champion still looking at the world it was trained on?

Daily, one run per day scoring the trailing `window_days` (default 7) days ending at it.
Backfillable: each day's drift verdict, persistence included, is computed from the features
alone, so days may run in any order; backfill with `max_active_runs=1` all the same, so two days
never race past the guards together.

| step | what it does |
|---|---|
| `wait_for_features` | deferrable: waits in the triggerer (no worker slot) for `features/<dataset>/ds={{ ds }}/_SUCCESS`; times out naming the day |
| `reconcile_deployment` | a deploy killed half-way (its intent is still in the lake) is finished or rolled back; then the service must serve the `champion`, else the task fails naming both versions and the fix. While a `train` or `deploy` run is in flight it only reports: that run settles both |
| `compute_drift` | the `champion` version's reference profile (logged by `train`) vs the window's features: PSI, Jensen-Shannon, binned Wasserstein and KS, missing-rate change, unseen categories per feature; the dataset verdict; the champion's logged predictions (the serving log, where there is one) scored against the labels vs its holdout ROC AUC; the policy's verdict over the last `persistence` windows (re-scored from their features). Writes `monitoring/drift/ds=.../report.json`. No champion yet: skipped, nothing to compare against |
| `report` | `report.html` beside it (heatmap of PSI by feature and day, reference vs current distributions, every statistic), linked from the task log; the day's metrics in MLflow (experiment `dslc-drift`, one run per champion version, stepped by day) |
| `decide` | the policy's verdict through the guards, all checked and all reported in `decision.json`: the kill switch, a `train` run queued or running, the cooldown (in data time), once per (champion version, day) |
| `trigger_retraining` | triggers `train` with run id `drift__<ds>__v<version>` and conf `reason`, `drifted_features` (with scores), `report_uri`, `window_end`=ds, `window_days`, `champion_version`, and a run note saying why (shown on that run in the UI); a second trigger for the same id is refused |
| `record_trigger` | records the retrain under `monitoring/drift/triggers/` (the cooldown reads it) |

The scheduled run for a day after the use case's source ("today" in the demo's 2013 story)
skips `wait_for_features` at once, saying no data will come. A conf key that is not a param
below fails the first task at once, naming the nearest param.

**Policy** (`dslc.monitoring.policy`, thresholds from `DSLC_DRIFT_*` settings, overridable per run below):
a feature drifted when PSI >= `psi_threshold` (or its missing rate moved by 10 points, or 5%
unseen categories); the day drifted when >= `share_threshold` of the features or any of the
model's most important ones drifted; retrain when `persistence` consecutive days drifted or
the champion's ROC AUC on labelled recent rows fell by `auc_tolerance` from its holdout value.

**Kill switch**, most specific wins: this run's `retrain` param (if set) > Airflow Variable
`dslc_drift_retrain_enabled` (if it exists) > `DSLC_DRIFT_RETRAIN_ENABLED` (default true).
Switched off, the monitor still scores, reports and decides; it just does not trigger.

**Notifications** (when `DSLC_NOTIFY_EMAILS` is set): a triggered retrain is e-mailed with the
reason, the most drifted features and the `train` run; so is a deploy `reconcile_deployment`
rolled back, and a task failing for good.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Param, dag, task

from dslc.model.registry import PROMOTE_POOL
from dslc.settings import get_settings
from dslc_airflow.errors import no_retry_on
from dslc_airflow.links import DriftReportLink, attach
from dslc_airflow.notify import FailureNotifier, ReconcileNotifier, RetrainNotifier
from dslc_airflow.operators import TriggerRunWithNote
from dslc_airflow.runs import check_conf
from dslc_airflow.sensors import PartitionSensor

_settings = get_settings()


@dag(
    dag_id="drift_monitor",
    schedule="@daily",
    start_date=dt.datetime(2013, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["dslc", "ml", "monitoring"],
    default_args={
        "owner": "dslc",
        "retries": 2,
        "retry_delay": dt.timedelta(seconds=30),
        # A conf key that is not a param fails the first task, naming the nearest param.
        "pre_execute": check_conf,
        # A task failing for good e-mails DSLC_NOTIFY_EMAILS (a rolled-back deploy says so).
        "on_failure_callback": FailureNotifier(),
    },
    params={
        # A week, not a day: one day holds a single day_of_week (PSI ~8 against any
        # multi-day reference) and a few hours of weather, so a 1-day window flags every day.
        "window_days": Param(
            7,
            type="integer",
            minimum=1,
            maximum=60,
            title="Window days",
            description="Days scored together, ending at the run's day (trailing window). "
            "Below 7, day_of_week alone looks drifted.",
        ),
        "retrain": Param(
            None,
            type=["null", "boolean"],
            title="Retrain (kill switch)",
            description="false: monitor without retraining; true: allow it; empty: the "
            "Variable dslc_drift_retrain_enabled, else DSLC_DRIFT_RETRAIN_ENABLED decides.",
        ),
        "psi_threshold": Param(
            _settings.drift_psi_threshold,
            type="number",
            exclusiveMinimum=0,
            title="PSI threshold",
            description="PSI at or above which a feature has drifted (0.1 moderate, 0.2 "
            "significant).",
        ),
        "share_threshold": Param(
            _settings.drift_share_threshold,
            type="number",
            exclusiveMinimum=0,
            maximum=1,
            title="Drifted share",
            description="Share of drifted features that makes the day drifted.",
        ),
        "persistence": Param(
            _settings.drift_persistence,
            type="integer",
            minimum=1,
            maximum=30,
            title="Persistence (days)",
            description="Consecutive drifted days before retraining.",
        ),
        "cooldown_days": Param(
            _settings.drift_cooldown_days,
            type="integer",
            minimum=0,
            maximum=365,
            title="Cooldown (days)",
            description="Days of data time between two triggered retrains.",
        ),
        "auc_tolerance": Param(
            _settings.drift_auc_tolerance,
            type="number",
            minimum=0,
            maximum=1,
            title="ROC AUC tolerance",
            description="Drop of the champion's ROC AUC on labelled days vs its holdout that "
            "triggers retraining.",
        ),
    },
)
def drift_monitor() -> None:
    # Poke interval and timeout: DSLC_LANDING_POKE_SECONDS / DSLC_LANDING_TIMEOUT_SECONDS + 1 h.
    wait = PartitionSensor(task_id="wait_for_features", dataset=_settings.dataset, retries=0)

    # In the promote pool: never side by side with a promote or a deploy it could mistake for
    # a dead one. A deploy it rolls back is e-mailed to DSLC_NOTIFY_EMAILS.
    @task(pool=PROMOTE_POOL, on_success_callback=ReconcileNotifier())
    def reconcile_deployment(ti: Any = None) -> dict[str, Any]:
        """Repair a deploy killed half-way; fail if the service does not serve the champion."""
        from dslc_airflow.deploy import run_reconcile

        return run_reconcile(ti)

    @task
    def compute_drift(params: dict[str, Any] | None = None, ds: str | None = None) -> Any:
        """Score the window against the champion's reference profile; write report.json."""
        import logging

        from airflow.sdk.exceptions import AirflowSkipException

        from dslc.monitoring import monitor as dm
        from dslc.monitoring.policy import Policy
        from dslc.settings import get_settings
        from dslc_airflow.lake import lake

        settings = get_settings()
        p = dict(params or {})
        with no_retry_on():
            champ = dm.champion(settings.model_name)
        if champ is None:
            why = (
                f"no champion of {settings.model_name!r} yet: nothing to compare against "
                "(train a model first); skipping the day"
            )
            logging.getLogger("airflow.task").info(why)
            raise AirflowSkipException(why)
        with no_retry_on():
            policy = Policy.from_settings(
                settings,
                **{
                    k: p.get(k)
                    for k in (
                        "psi_threshold",
                        "share_threshold",
                        "persistence",
                        "cooldown_days",
                        "auc_tolerance",
                    )
                },
            )
            report = dm.compute(
                lake(),
                champ,
                ds=str(ds),
                window=int(p.get("window_days") or 7),
                policy=policy,
                dataset=settings.dataset,
            )
        return {
            "version": champ.version,
            "drifted": report["dataset"]["drifted"],
            "retrain_wanted": report["decision"]["retrain"],
            "reason": report["decision"]["reason"],
        }

    @task
    def report(computed: dict[str, Any], ds: str | None = None) -> dict[str, str]:
        """Render report.html, log the day to MLflow, and link both from this log."""
        import logging

        from dslc import reports
        from dslc.monitoring import monitor as dm
        from dslc.monitoring import report as drift_report
        from dslc_airflow.lake import lake
        from dslc_airflow.links import report_link

        lk = lake()
        day = str(ds)
        today = dm.read_report(lk, day)
        if today is None:
            raise FileNotFoundError(f"no report.json for {day}: clear compute_drift")
        page = drift_report.render(today, dm.history(lk, day, dm.HEATMAP_DAYS))
        lk.write_text(page, dm.report_key(day), dm.REPORT_HTML)
        with no_retry_on():
            logged = dm.log_to_mlflow(today, page)
        links = {
            "html": lk.uri(dm.report_key(day), dm.REPORT_HTML),
            "json": lk.uri(dm.report_key(day), dm.REPORT_JSON),
            "mlflow_run": f"{logged['tracking_uri']}/#/experiments/"
            f"{logged['experiment_id']}/runs/{logged['run_id']}",
            "page": report_link(reports.drift_report_key(day)),
        }
        log = logging.getLogger("airflow.task")
        for what, link in links.items():
            log.info("drift report %s: %s", what, link)
        return links

    @task.short_circuit(multiple_outputs=True)
    def decide(
        computed: dict[str, Any],
        params: dict[str, Any] | None = None,
        ds: str | None = None,
        ti: Any = None,
    ) -> dict[str, Any] | None:
        """Policy verdict through the guards; continue to the trigger only on a go."""
        import logging

        from airflow.sdk import Variable

        from dslc.monitoring import monitor as dm
        from dslc.settings import get_settings
        from dslc_airflow.lake import lake

        settings = get_settings()
        variable = Variable.get("dslc_drift_retrain_enabled", default=None)
        with no_retry_on():
            enabled, source = dm.retrain_switch(
                (params or {}).get("retrain"), variable, settings.drift_retrain_enabled
            )
        run_id = dm.trigger_run_id(str(ds), computed["version"])
        facts = dm.Facts(
            train_in_flight=ti.get_dr_count(dag_id=dm.TRAIN_DAG, states=["queued", "running"]),
            run_exists=ti.get_dr_count(dag_id=dm.TRAIN_DAG, run_ids=[run_id]) > 0,
        )
        with no_retry_on():
            decision = dm.decide(
                lake(),
                ds=str(ds),
                retrain_enabled=enabled,
                switch_source=source,
                facts=facts,
                train_window_days=settings.train_window_days,
            )
        log = logging.getLogger("airflow.task")
        if not decision["trigger"]:
            why = decision["blocked_by"] or [decision["policy"]["reason"]]
            log.info("no retrain for %s: %s", ds, "; ".join(why))
            return None
        log.info("retrain %s: %s", run_id, decision["conf"]["reason"])
        return {"run_id": run_id, "conf": decision["conf"], "note": dm.run_note(decision["conf"])}

    # The calls pass XComArgs where the tasks take their values (Airflow resolves them at run
    # time); Airflow's Task type cannot say so (apache/airflow#39514), hence the ignores
    # (``decided`` is indexable: decide has multiple_outputs).
    computed = compute_drift()
    decided = decide(computed)  # type: ignore[arg-type]
    wait >> reconcile_deployment() >> computed
    # report and decide run side by side; the trigger waits for both, so the report the
    # train conf names exists before train starts.
    # "Drift report": the day's report.html, served by the dslc_ui plugin.
    reported = attach(report(computed), DriftReportLink())  # type: ignore[arg-type]

    trigger = TriggerRunWithNote(
        task_id="trigger_retraining",
        trigger_dag_id="train",
        trigger_run_id=decided["run_id"],  # type: ignore[index]
        conf=decided["conf"],  # type: ignore[index]
        # Shown on the train run in the UI: why, the most drifted features, the report.
        note=decided["note"],  # type: ignore[index]
        logical_date=None,
        wait_for_completion=False,
        # The run id is deterministic per (day, champion version): a re-run is a no-op.
        skip_when_already_exists=True,
        # Why, what drifted, the train run: e-mailed to DSLC_NOTIFY_EMAILS.
        on_success_callback=RetrainNotifier(),
    )

    @task
    def record_trigger(decided: dict[str, Any], ds: str | None = None) -> str:
        """Record the triggered retrain in the lake (the cooldown and re-runs read it)."""
        from dslc.monitoring import monitor as dm
        from dslc_airflow.lake import lake

        conf = decided["conf"]
        return dm.write_trigger_record(
            lake(),
            {
                "ds": str(ds),
                "version": conf["champion_version"],
                "run_id": decided["run_id"],
                "conf": conf,
            },
        )

    reported >> trigger
    trigger >> record_trigger(decided)  # type: ignore[arg-type]


drift_monitor()
