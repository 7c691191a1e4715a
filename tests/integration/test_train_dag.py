"""The train DAG against a real MLflow server (loopback, temp SQLite) and real feature partitions.

``dag.test()`` runs cover what a user sees in Airflow and MLflow: the first champion with its
lineage, a deterministic second run that takes over (keeping ``previous_champion``), a rejected
challenger that stays registered, and a window with no data. The faults (a worker killed during
``train``, MLflow down during ``register``, two runs racing to promote, an unloadable champion)
drive the ``dslc`` functions the tasks call, so each fault happens at an exact point.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from dslc.lake import Lake
from dslc.model import evaluation, registry, training
from tests.integration.conftest import ROOT, TRAIN_LAST_DAY

pytestmark = pytest.mark.integration

# 50 boosting iterations (default 200) keep each fit short on this small window.
WINDOW = {"window_end": TRAIN_LAST_DAY, "window_days": 21, "max_iter": 50, "deploy": False}


@pytest.fixture
def model_name() -> str:
    return f"flights_late_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def train_env(feature_lake: Lake, mlflow_server, model_name: str, monkeypatch):
    """Settings pointing at the session's lake and MLflow server, with a fresh model name."""
    from dslc.settings import get_settings

    monkeypatch.setenv("DSLC_LAKE_URL", feature_lake.url)
    monkeypatch.setenv("DSLC_MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("DSLC_MODEL_NAME", model_name)
    monkeypatch.setenv("DSLC_TRAIN_MIN_ROWS", "1000")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def train_dag(airflow_db: None, train_env: None):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags" / "train.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["train"]


def run(dag, capfd, **conf: Any) -> tuple[str, dict[str, str], str]:
    """dag.test() once; returns the run state, each task's state and the run id."""
    capfd.readouterr()
    dr = dag.test(run_conf={**WINDOW, **conf})
    return str(dr.state), {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}, dr.run_id


def client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def aliases(c, name: str) -> dict[str, str]:
    return {a: str(v) for a, v in c.get_registered_model(name).aliases.items()}


def test_two_runs_first_champion_then_deterministic_takeover(
    train_dag, feature_lake: Lake, mlflow_server, model_name: str, capfd
):
    state, tasks, run_id = run(train_dag, capfd, reason="first champion")
    assert state == "success", tasks
    assert set(tasks) == {"assemble", "train", "evaluate", "register", "promote", "deploy"}
    c = client(mlflow_server)
    assert aliases(c, model_name) == {"champion": "1"}

    # What a user checks in MLflow: lineage on the version and the run.
    v1 = c.get_model_version(model_name, "1")
    assert v1.tags["dslc.window"] == "2013-01-01..2013-01-21"
    assert v1.tags["dslc.trigger_reason"] == "first champion"
    assert v1.tags["dslc.source_dag_run_id"] == run_id
    assert v1.tags["dslc.git_sha"] and v1.tags["dslc.git_sha"] != "unknown"
    assert v1.tags["dslc.promotion"] == "promoted"
    split = json.loads(feature_lake.read_text(v1.tags["dslc.split"].split("/lake/", 1)[1]))
    assert [p["ds"] for p in split["partitions"]][-3:] == [
        "2013-01-19",
        "2013-01-20",
        "2013-01-21",
    ]
    assert {p["split"] for p in split["partitions"][-3:]} == {"holdout"}
    for p in split["partitions"]:
        manifest = feature_lake.manifest(p["partition"])
        assert manifest is not None and manifest.content_hash == p["content_hash"]
        assert f"{p['ds']}:{p['content_hash'][7:19]}" in v1.tags["dslc.partitions"]
    r1 = c.get_run(v1.run_id)
    assert r1.data.params["max_iter"] == "50" and r1.data.params["window_days"] == "21"
    assert 0.6 < r1.data.metrics["holdout_roc_auc"] < 0.9
    assert "holdout.origin_EWR.roc_auc" in r1.data.metrics
    names = {f.path for f in c.list_artifacts(v1.run_id)}
    assert {"model", "evaluation", "reference", "split.json"} <= names
    mlmodel = Path(c.download_artifacts(v1.run_id, "model/MLmodel")).read_text()
    assert "serialization_format: skops" in mlmodel and "signature" in mlmodel
    profile = registry.reference_profile(model_name)
    assert set(profile["features"]) >= {"distance", "temp", "carrier", "origin", "dest"}

    # Same window and params: same metrics; the challenger ties, so it takes over.
    state, tasks, _ = run(train_dag, capfd, reason="second")
    assert state == "success", tasks
    assert aliases(c, model_name) == {"champion": "2", "previous_champion": "1"}
    r2 = c.get_run(c.get_model_version(model_name, "2").run_id)
    for key in ("holdout_roc_auc", "holdout_log_loss", "valid_roc_auc"):
        assert r2.data.metrics[key] == r1.data.metrics[key], key
    assert r2.data.metrics["champion_holdout_roc_auc"] == r1.data.metrics["holdout_roc_auc"]
    compare = Path(c.download_artifacts(r2.info.run_id, "evaluation/comparison.md")).read_text()
    assert "champion v1" in compare and "origin=JFK" in compare

    # The weekly schedule now has nothing new: the champion's window (its dslc.window tag in
    # MLflow) ends at the lake's latest feature day, so a scheduled run skips saying so.
    from dslc.errors import NothingToDo

    with pytest.raises(
        NothingToDo,
        match=r"^nothing new since the champion's window: the latest published feature day "
        r"2013-01-21 is inside the window 2013-01-01\.\.2013-01-21 of the champion of ",
    ):
        training.assemble_run(feature_lake, {}, dag_run_id="scheduled__w", run_type="scheduled")


def test_rejected_challenger_stays_registered_and_the_run_succeeds(
    train_dag, mlflow_server, model_name: str, capfd, caplog, monkeypatch
):
    from dslc.settings import get_settings

    monkeypatch.setenv("DSLC_PROMOTE_AUC_FLOOR", "0.99")
    get_settings.cache_clear()
    state, tasks, _ = run(train_dag, capfd)
    assert state == "success", tasks
    assert tasks["promote"] == "success"
    c = client(mlflow_server)
    assert aliases(c, model_name) == {}
    v1 = c.get_model_version(model_name, "1")
    assert v1.tags["dslc.promotion"] == "rejected"
    assert "below the floor 0.9900" in v1.tags["dslc.promotion_reason"]
    assert f"NOT promoted: {model_name} version 1 stays registered" in caplog.text


def test_window_without_data_fails_before_training(train_dag, mlflow_server, capfd):
    state, tasks, run_id = run(train_dag, capfd, window_end="2013-06-30", window_days=10)
    assert state == "failed"
    assert tasks["assemble"] == "failed"
    assert tasks["train"] in {"upstream_failed", "None"}
    assert "no published feature partitions in the window 2013-06-21..2013-06-30" in (
        capfd.readouterr().out
    )
    c = client(mlflow_server)
    exps = [e.experiment_id for e in c.search_experiments()]
    assert not c.search_runs(exps, filter_string=f"tags.`dslc.dag_run_id` = '{run_id}'")


def test_bad_param_is_rejected_before_a_run_is_created(train_dag):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="window_days"):
        train_dag.test(run_conf={"window_days": 0})


# -- faults, at exact points ---------------------------------------------------------------------


def _assemble(lake: Lake, dag_run_id: str) -> dict[str, Any]:
    return training.assemble_run(lake, dict(WINDOW), dag_run_id=dag_run_id, run_type="manual")


def _train(lake: Lake, assembled: dict[str, Any], dag_run_id: str) -> dict[str, Any]:
    return training.train(
        lake,
        split_path=assembled["split"],
        params=training.TrainParams(**assembled["config"]["train"]),
        dag_run_id=dag_run_id,
        lineage=assembled["lineage"],
    )


def _register(lake: Lake, assembled: dict[str, Any], run_id: str, name: str) -> dict[str, Any]:
    return registry.register(
        lake,
        split_path=assembled["split"],
        run_id=run_id,
        model_name=name,
        lineage=assembled["lineage"],
    )


_KILLED_DURING_SAVE = """
import os, signal, sys
from dslc.model import registry, training
from dslc.lake import Lake

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # the worker dies while saving the model

registry.save_model = killed
lake = Lake(sys.argv[1])
assembled = training.assemble_run(lake, {"window_end": sys.argv[3], "window_days": 21,
                                         "max_iter": 50},
                                  dag_run_id=sys.argv[2], run_type="manual")
training.train(lake, split_path=assembled["split"],
               params=training.TrainParams(**assembled["config"]["train"]),
               dag_run_id=sys.argv[2], lineage=assembled["lineage"])
"""


def test_worker_killed_during_train_then_retry_gives_one_run_and_one_version(
    train_env, feature_lake: Lake, mlflow_server, model_name: str
):
    dag_run_id = f"manual__killed_{uuid.uuid4().hex[:6]}"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(_KILLED_DURING_SAVE),
            feature_lake.url,
            dag_run_id,
            TRAIN_LAST_DAY,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    c = client(mlflow_server)
    exps = [e.experiment_id for e in c.search_experiments()]
    flt = f"tags.`dslc.dag_run_id` = '{dag_run_id}'"
    (half,) = c.search_runs(exps, filter_string=flt)  # the dead attempt left a run behind
    assert half.info.status == "RUNNING" and "dslc.model_logged" not in half.data.tags

    # The retry (and a second retry after success) reuse that run; registering twice is once.
    assembled = _assemble(feature_lake, dag_run_id)
    first = _train(feature_lake, assembled, dag_run_id)
    again = _train(feature_lake, assembled, dag_run_id)
    assert first["run_id"] == again["run_id"] == half.info.run_id and again["reused"]
    assert _register(feature_lake, assembled, first["run_id"], model_name)["created"]
    assert not _register(feature_lake, assembled, first["run_id"], model_name)["created"]
    (run_,) = c.search_runs(exps, filter_string=flt)
    assert run_.info.status == "FINISHED"
    versions = c.search_model_versions(f"name = '{model_name}'")
    assert [v.version for v in versions] == ["1"] or [int(v.version) for v in versions] == [1]


def test_fit_that_fails_marks_its_mlflow_run_failed_and_the_retry_finishes_it(
    train_env, feature_lake: Lake, mlflow_server, monkeypatch
):
    """The MLflow run opens while the model fits: a fit that raises leaves it FAILED (not
    RUNNING forever), with the params but no model; the retry resumes that same run."""
    dag_run_id = f"manual__fit_fails_{uuid.uuid4().hex[:6]}"
    assembled = _assemble(feature_lake, dag_run_id)
    real_fit = training.fit

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise MemoryError("the fit ran out of memory")

    monkeypatch.setattr(training, "fit", broken)
    with pytest.raises(MemoryError, match="out of memory"):
        _train(feature_lake, assembled, dag_run_id)
    c = client(mlflow_server)
    exps = [e.experiment_id for e in c.search_experiments()]
    flt = f"tags.`dslc.dag_run_id` = '{dag_run_id}'"
    (failed,) = c.search_runs(exps, filter_string=flt)
    assert failed.info.status == "FAILED"
    assert failed.data.params["window_days"] and "dslc.model_logged" not in failed.data.tags
    assert not [a.path for a in c.list_artifacts(failed.info.run_id, "model")]

    monkeypatch.setattr(training, "fit", real_fit)
    done = _train(feature_lake, assembled, dag_run_id)
    assert done["run_id"] == failed.info.run_id and not done["reused"]
    run_ = c.get_run(done["run_id"])
    assert run_.info.status == "FINISHED" and run_.data.tags["dslc.model_logged"] == "true"
    assert "valid_roc_auc" in run_.data.metrics
    files = {a.path for a in c.list_artifacts(done["run_id"], "model")}
    assert {"model/MLmodel", "model/model.skops", "model/requirements.txt"} <= files
    assert registry.load_run_model(done["run_id"], mlflow_server.url) is not None


@pytest.fixture(scope="module")
def two_runs(feature_lake: Lake, mlflow_server):
    """Two trained MLflow runs (different DAG run ids), not yet registered anywhere."""
    import os

    from dslc.settings import get_settings

    old = {k: os.environ.get(k) for k in ("DSLC_LAKE_URL", "DSLC_MLFLOW_TRACKING_URI")}
    os.environ.update(
        {"DSLC_LAKE_URL": feature_lake.url, "DSLC_MLFLOW_TRACKING_URI": mlflow_server.url}
    )
    get_settings.cache_clear()
    try:
        made = []
        for who in ("a", "b"):
            dag_run_id = f"manual__two_{who}_{uuid.uuid4().hex[:6]}"
            assembled = _assemble(feature_lake, dag_run_id)
            made.append((assembled, _train(feature_lake, assembled, dag_run_id)))
        return made
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


def test_two_runs_racing_to_promote_exactly_one_wins(
    train_env, two_runs, feature_lake: Lake, mlflow_server, model_name: str
):
    made = two_runs
    # Both evaluated while there was no champion, then both registered.
    evals = [
        evaluation.evaluate(
            feature_lake,
            split_path=a["split"],
            run_id=t["run_id"],
            model_name=model_name,
            force_promote=False,
        )
        for a, t in made
    ]
    versions = [_register(feature_lake, a, t["run_id"], model_name)["version"] for a, t in made]
    assert all(e["champion_version"] is None for e in evals)

    won = registry.promote(
        model_name, versions[0], evals[0], tolerance=0.01, floor=0.6, force=False
    )
    assert won["promote"]
    with pytest.raises(registry.PromotionConflictError) as lost:
        registry.promote(model_name, versions[1], evals[1], tolerance=0.01, floor=0.6, force=False)
    assert f"Version {versions[0]} won" in str(lost.value)
    assert aliases(client(mlflow_server), model_name) == {"champion": versions[0]}


def test_mlflow_down_during_register_fails_clearly_and_moves_no_alias(
    train_env, two_runs, feature_lake: Lake, tmp_path: Path, monkeypatch
):
    from dslc.settings import get_settings
    from tests.integration.mlflow_server import MlflowServer

    own = MlflowServer(tmp_path / "mlflow")  # this test stops its own server, not the shared one
    own.start()
    try:
        monkeypatch.setenv("DSLC_MLFLOW_TRACKING_URI", own.url)
        get_settings.cache_clear()
        c = client(own)
        c.create_registered_model("down")
        champ_run = c.create_run(c.create_experiment("down")).info
        v1 = c.create_model_version(
            "down", source=f"{champ_run.artifact_uri}/model", run_id=champ_run.run_id
        ).version
        c.set_registered_model_alias("down", "champion", v1)

        own.stop()
        assembled, trained = two_runs[0]
        with pytest.raises(registry.RegistryUnavailableError) as err:
            _register(feature_lake, assembled, trained["run_id"], "down")
        assert f"the MLflow server at {own.url} is not reachable" in str(err.value)
        assert "clear the task" in str(err.value)

        own.start()
        c = client(own)
        assert aliases(c, "down") == {"champion": str(v1)}
        assert [v.version for v in c.search_model_versions("name = 'down'")] == [v1]
    finally:
        own.stop()


def test_unloadable_champion_fails_evaluate_unless_force_promote(
    train_env, two_runs, feature_lake: Lake, mlflow_server, model_name: str
):
    (_a_old, t_old), (a_new, t_new) = two_runs
    c = client(mlflow_server)
    # The champion's artifact is gone: its version points where no model is.
    c.create_registered_model(model_name)
    run_uri = c.get_run(t_old["run_id"]).info.artifact_uri
    v1 = str(
        c.create_model_version(model_name, source=f"{run_uri}/gone", run_id=t_old["run_id"]).version
    )
    c.set_registered_model_alias(model_name, "champion", v1)

    with pytest.raises(registry.RegistryError) as err:
        evaluation.evaluate(
            feature_lake,
            split_path=a_new["split"],
            run_id=t_new["run_id"],
            model_name=model_name,
            force_promote=False,
        )
    message = str(err.value)
    assert f"the champion of '{model_name}' (version {v1}" in message
    assert "cannot be loaded" in message and "force_promote=true" in message

    forced = evaluation.evaluate(
        feature_lake,
        split_path=a_new["split"],
        run_id=t_new["run_id"],
        model_name=model_name,
        force_promote=True,
    )
    assert forced["champion"] is None and forced["champion_version"] == v1
    assert "evaluated without it (force_promote)" in forced["champion_note"]
    v2 = _register(feature_lake, a_new, t_new["run_id"], model_name)["version"]
    decision = registry.promote(model_name, v2, forced, tolerance=0.01, floor=0.6, force=True)
    assert decision["promote"] and "forced" in decision["reason"]
    assert aliases(c, model_name) == {"champion": v2, "previous_champion": v1}
