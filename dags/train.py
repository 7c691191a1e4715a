"""
### train: assemble -> train -> evaluate against the champion -> register -> promote -> deploy

(Re)trains the use case's model (by default: is this flight going to be late?) from the
published feature partitions in a window, moves the `champion` alias in MLflow only if the new
model earns it, and deploys the new champion to the serving service.

| step | what it does |
|---|---|
| `assemble` | checks the params; reads the published `features/<dataset>/ds=...` partitions in the window (missing days are logged; too few days or rows fail); splits by date into train / valid / holdout (never at random across time); writes `training/<dataset>/run=.../split.json` with every partition's content hash |
| `train` | fits the seeded scikit-learn pipeline (ordinal-encoded categoricals -> HistGradientBoosting with native categorical splits); logs params, metrics, split and model (skops, signature, input example, pinned requirements) to one MLflow run per DAG run (a retry reuses it) |
| `evaluate` | scores the challenger and the current `champion` on the same holdout: ROC AUC, PR AUC, log loss, Brier, calibration, per origin and top carriers; logged to the run as metrics, `evaluation/evaluation.json` and `evaluation/comparison.md` |
| `register` | one model version per run (a retry finds it), tagged with window, partition hashes, git sha, trigger reason and DAG run id; the drift reference profile is logged with it |
| `promote` | gate: ROC AUC not worse than the champion's by more than `tolerance`, above the floor, no slice collapsed (or `force_promote`). On pass `previous_champion` <- old, `champion` <- new, refusing if another run moved `champion` meanwhile. Runs in the 1-slot pool `dslc_promote` (as every deploy does), so no two promotions or deploys interleave. On reject the version stays registered, tagged with why, and the task succeeds; its return value (XCom) and log say so |
| `deploy` | only when `promote` promoted and the `deploy` param is on (otherwise skipped: "nothing to deploy"). The serving target (`DSLC_DEPLOY_TARGET`: the local service, or a Kubernetes Deployment) loads the new champion; a smoke test sends holdout rows through `/predict` and compares them with the registered model's offline predictions (within 1e-9). On any failure the service goes back to the version it served, `champion` goes back to the previous version, and the task fails without retries saying what failed. Every attempt is recorded in the lake (`deployments/<model>/`) and in the version's `dslc.deployment` tag. Roll back or redeploy by hand with the `deploy` DAG |

Triggered from the form below, by the drift DAG (`conf`: `reason`, `window_end`,
`window_days`, `report_uri`, `drifted_features`, `champion_version`, `drift_window`), or weekly.
A weekly run with nothing to do skips `assemble` and says why in its log: "no data yet", or
"nothing new since the champion's window" (no feature day after the champion's window end);
a run triggered by hand or by the drift DAG fails on the same input instead. A conf key that is
not one of the params below fails the first task at once, naming the param it was probably
meant to be (`windw_days` -> `window_days`). Look in MLflow under the
experiment `dslc-train` and the registered model (`flights_late` by default, `DSLC_MODEL_NAME`).

Notifications (when `DSLC_NOTIFY_EMAILS` is set): `promote` e-mails its decision (promoted or
rejected, with both ROC AUCs); a task failing for good e-mails the error, a deploy that rolled
back says what failed and what serves now.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import Param, dag, task

from dslc.model.registry import PROMOTE_POOL
from dslc.settings import get_settings
from dslc_airflow.errors import no_retry_on
from dslc_airflow.links import MlflowRunLink, ModelVersionLink, attach
from dslc_airflow.notify import FailureNotifier, PromotionNotifier
from dslc_airflow.runs import check_conf

if TYPE_CHECKING:
    # Types only: the values are plain JSON in XCom (and TYPE_CHECKING keeps Airflow from
    # splitting them into one XCom per key).
    from dslc.model.results import Assembled, Evaluated, Promoted, Registered, Trained

_settings = get_settings()


@dag(
    dag_id="train",
    schedule="@weekly",
    start_date=dt.datetime(2013, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["dslc", "ml"],
    default_args={
        "owner": "dslc",
        "retries": 2,
        "retry_delay": dt.timedelta(seconds=30),
        # A conf key that is not a param below fails the first task, naming the nearest param.
        "pre_execute": check_conf,
        # A task failing for good e-mails DSLC_NOTIFY_EMAILS (a rolled-back deploy says so).
        "on_failure_callback": FailureNotifier(),
    },
    params={
        "window_end": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Window end",
            description="Last day of the training window (YYYY-MM-DD); empty: the latest "
            "published feature day.",
        ),
        "window_days": Param(
            _settings.train_window_days,
            type="integer",
            minimum=1,
            maximum=366,
            title="Window days",
            description="Days in the window, ending at the window end (the last days are the "
            "validation and holdout days).",
        ),
        "learning_rate": Param(
            0.1, type="number", minimum=0.0001, maximum=1, title="Learning rate"
        ),
        "max_iter": Param(
            200, type="integer", minimum=1, maximum=5000, title="Boosting iterations"
        ),
        "max_leaf_nodes": Param(
            31, type="integer", minimum=2, maximum=4096, title="Leaves per tree"
        ),
        "min_samples_leaf": Param(
            40, type="integer", minimum=1, maximum=100000, title="Min rows per leaf"
        ),
        "l2_regularization": Param(1.0, type="number", minimum=0, title="L2 regularization"),
        "seed": Param(42, type="integer", minimum=0, title="Random seed"),
        "valid_days": Param(3, type="integer", minimum=1, maximum=60, title="Validation days"),
        "holdout_days": Param(
            3,
            type="integer",
            minimum=1,
            maximum=60,
            title="Holdout days",
            description="The last days of the window, on which challenger and champion are "
            "compared.",
        ),
        "tolerance": Param(
            _settings.promote_tolerance,
            type="number",
            minimum=0,
            maximum=1,
            title="Promotion tolerance",
            description="How much lower than the champion's the challenger's holdout ROC AUC "
            "may be and still be promoted.",
        ),
        "force_promote": Param(
            False,
            type="boolean",
            title="Force promote",
            description="Promote whatever the gate says (and evaluate against no champion if "
            "the champion cannot be loaded).",
        ),
        "reason": Param(
            "",
            type="string",
            maxLength=500,
            title="Reason",
            description="Why this run: kept with the MLflow run and model version.",
        ),
        "deploy": Param(
            True,
            type="boolean",
            title="Deploy",
            description="Deploy the new champion when it is promoted (false: promote only; "
            "serve it later with the `deploy` DAG).",
        ),
        "report_uri": Param(
            None,
            type=["null", "string"],
            title="Drift report",
            description="The drift report that triggered this run (set by drift_monitor).",
        ),
        "drifted_features": Param(
            [],
            type=["null", "array"],
            title="Drifted features",
            description="Set by drift_monitor.",
        ),
        "champion_version": Param(
            None,
            type=["null", "string", "integer"],
            title="Champion at trigger time",
            description="Set by drift_monitor: the version whose drift triggered this run.",
        ),
        "drift_window": Param(
            None,
            type=["null", "object", "string"],
            title="Drift window",
            description="Set by drift_monitor: the monitored window that drifted.",
        ),
    },
)
def train() -> None:
    @task
    def assemble(
        params: dict[str, Any] | None = None,
        run_id: str | None = None,
        dag_run: Any = None,
    ) -> Assembled:
        """Check the params, split the window by date and write the split manifest."""
        from dslc.model import training
        from dslc_airflow.lake import lake
        from dslc_airflow.runs import run_type

        # A scheduled run with no data, or none newer than the champion's window, skips.
        with no_retry_on():
            return training.assemble_run(
                lake(), dict(params or {}), dag_run_id=str(run_id), run_type=run_type(dag_run)
            )

    @task(task_id="train")
    def fit(assembled: Assembled, run_id: str | None = None) -> Trained:
        """Fit the pipeline and log it to this DAG run's MLflow run."""
        from dslc.model import training
        from dslc_airflow.lake import lake

        with no_retry_on():
            return training.train(
                lake(),
                split_path=assembled["split"],
                params=training.TrainParams(**assembled["config"]["train"]),
                dag_run_id=str(run_id),
                lineage=assembled["lineage"],
            )

    @task
    def evaluate(assembled: Assembled, trained: Trained) -> Evaluated:
        """Score challenger and champion on the same holdout."""
        from dslc.model import evaluation
        from dslc_airflow.lake import lake

        with no_retry_on():
            return evaluation.evaluate(
                lake(),
                split_path=assembled["split"],
                run_id=trained["run_id"],
                model_name=assembled["config"]["model_name"],
                force_promote=assembled["config"]["force_promote"],
            )

    @task
    def register(assembled: Assembled, trained: Trained) -> Registered:
        """Register the run's model once, with lineage tags and the reference profile."""
        from dslc.model import registry
        from dslc_airflow.lake import lake

        with no_retry_on():
            return registry.register(
                lake(),
                split_path=assembled["split"],
                run_id=trained["run_id"],
                model_name=assembled["config"]["model_name"],
                lineage=assembled["lineage"],
            )

    # 1 slot: no two promotions or deploys interleave. Its outcome (promoted or rejected) is
    # e-mailed to DSLC_NOTIFY_EMAILS.
    @task(pool=PROMOTE_POOL, on_success_callback=PromotionNotifier())
    def promote(assembled: Assembled, evaluated: Evaluated, registered: Registered) -> Promoted:
        """Gate, then move the champion alias (compare-and-swap) or record the rejection."""
        from dslc.model import registry
        from dslc.settings import get_settings

        config = assembled["config"]
        with no_retry_on():
            return registry.promote(
                config["model_name"],
                registered["version"],
                evaluated,
                tolerance=config["tolerance"],
                floor=get_settings().promote_auc_floor,
                force=config["force_promote"],
            )

    @task(task_id="deploy", pool=PROMOTE_POOL)
    def deploy_champion(
        assembled: Assembled,
        promoted: Promoted,
        params: dict[str, Any] | None = None,
        dag_run: Any = None,
    ) -> dict[str, Any]:
        """Serve the new champion and smoke-test it; roll back service and alias on failure."""
        from airflow.sdk.exceptions import AirflowSkipException

        from dslc_airflow.deploy import run_deploy

        if not promoted["promote"]:
            logging.getLogger(__name__).info(
                "nothing to deploy: version %s was not promoted", promoted["version"]
            )
            raise AirflowSkipException(
                f"nothing to deploy: version {promoted['version']} was not promoted "
                f"({promoted['reason']})"
            )
        if not (params or {}).get("deploy", True):
            raise AirflowSkipException(
                f"not deploying version {promoted['version']}: the run's param deploy=false"
            )
        config = assembled["config"]
        return run_deploy(
            config["model_name"],
            promoted["version"],
            dag_run=dag_run,
            reason=f"promoted by train: {promoted['reason']}"[:500],
            previous=promoted.get("previous_champion"),
        )

    # The calls pass XComArgs where the tasks take their values (Airflow resolves them at run
    # time); Airflow's Task type cannot say so (apache/airflow#39514), hence the ignores.
    # Extra links: "MLflow run" and "Model version" open MLflow on what the task produced.
    assembled = assemble()
    trained = attach(fit(assembled), MlflowRunLink())  # type: ignore[arg-type]
    evaluated = attach(evaluate(assembled, trained), MlflowRunLink())  # type: ignore[arg-type]
    registered = attach(
        register(assembled, trained),  # type: ignore[arg-type]
        MlflowRunLink(),
        ModelVersionLink(),
    )
    evaluated >> registered
    promoted = attach(
        promote(assembled, evaluated, registered),  # type: ignore[arg-type]
        MlflowRunLink(),
        ModelVersionLink(),
    )
    deploy_champion(assembled, promoted)  # type: ignore[arg-type]


train()
