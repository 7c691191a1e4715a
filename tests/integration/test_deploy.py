"""Deploy against a real serving process (``python -m dslc.serving``) and a real MLflow server.

Versions are registered the way ``train`` registers them (real features, real split manifest,
``dslc.split`` tag), plus two broken ones:

* a version whose model artifact is garbage: the service's load fails;
* a version whose registered artifact is replaced after the service loaded it (the artifact
  store was overwritten under the version): it loads and passes the service's self-test, but the
  service's answers no longer match what the registry says the version predicts, which is what
  the smoke test exists to catch.

Each test starts its own serving process on v1 (the champion). The ``deploy`` DAG also runs
through ``dag.test()``.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dslc import deploy
from dslc.deploy import records
from dslc.deploy.local import LocalTarget
from dslc.lake import Lake
from dslc.model import registry
from dslc.model.spec import features_of
from dslc.model.split import load_frame, read_split
from tests.integration.conftest import ROOT, TRAIN_LAST_DAY
from tests.integration.serving_server import ServingServer, serving_server
from tests.support import dslc_env, train_and_register

pytestmark = pytest.mark.integration

TOKEN = secrets.token_urlsafe(16)


class Models:
    """What the module registered: good v1/v2, corrupt, swapped-after-load."""

    def __init__(self, name: str, lake: Lake, uri: str) -> None:
        self.name, self.lake, self.uri = name, lake, uri
        self.good: list[str] = []
        self.corrupt = ""
        self.swapped = ""
        self.swap_run = ""
        self.replacement: Path | None = None


def _train_register(lake: Lake, name: str, params: dict[str, Any]) -> str:
    window = {"window_end": TRAIN_LAST_DAY, "window_days": 21, **params}
    return str(train_and_register(lake, name, window, run_prefix="manual__deploy")["version"])


def _save(pipe: Any, example: Any, where: Path, corrupt: bool = False) -> Path:
    path = where / registry.MODEL_PATH
    registry.save_model(pipe, path, example)
    if corrupt:
        (path / "model.skops").write_bytes(b"this is not a skops file")
    return path


def _register_copy(c: Any, name: str, path: Path, split_uri: str) -> tuple[str, str]:
    """A version of the model saved at ``path``, tagged with the split ``split_uri``."""
    exp = registry.experiment_id(c, "dslc-deploy-tests")
    run = c.create_run(exp)
    c.log_artifacts(run.info.run_id, str(path), registry.MODEL_PATH)
    c.set_terminated(run.info.run_id, "FINISHED")
    mv = c.create_model_version(
        name,
        source=f"{run.info.artifact_uri}/{registry.MODEL_PATH}",
        run_id=run.info.run_id,
        tags={"dslc.split": split_uri},
    )
    return str(mv.version), run.info.run_id


@pytest.fixture(scope="module")
def models(feature_lake: Lake, mlflow_server, tmp_path_factory) -> Models:
    name = f"flights_late_deploy_{uuid.uuid4().hex[:6]}"
    out = Models(name, feature_lake, mlflow_server.url)
    work = tmp_path_factory.mktemp("deploy-models")
    with dslc_env(
        DSLC_LAKE_URL=feature_lake.url,
        DSLC_MLFLOW_TRACKING_URI=mlflow_server.url,
        DSLC_MODEL_NAME=name,
        DSLC_TRAIN_MIN_ROWS="1000",
    ):
        out.good.append(_train_register(feature_lake, name, {"max_iter": 30}))
        out.good.append(_train_register(feature_lake, name, {"max_iter": 60, "learning_rate": 0.2}))
        c = registry.client()
        split_uri = c.get_model_version(name, out.good[0]).tags["dslc.split"]
        pipe1 = registry.load_version(name, out.good[0])
        pipe2 = registry.load_version(name, out.good[1])
        split = read_split(feature_lake, split_uri.split(feature_lake.uri() + "/")[1])
        example = features_of(load_frame(feature_lake, split, "train").head(5))
        out.corrupt, _ = _register_copy(
            c, name, _save(pipe1, example, work / "corrupt", corrupt=True), split_uri
        )
        out.swapped, out.swap_run = _register_copy(
            c, name, _save(pipe2, example, work / "served"), split_uri
        )
        out.replacement = _save(pipe1, example, work / "replacement")
    return out


@pytest.fixture
def env(models: Models, tmp_path: Path, monkeypatch) -> None:
    from dslc.settings import get_settings

    for key, value in {
        "DSLC_LAKE_URL": models.lake.url,
        "DSLC_MLFLOW_TRACKING_URI": models.uri,
        "DSLC_MODEL_NAME": models.name,
        "DSLC_SERVING_ADMIN_TOKEN": TOKEN,
        "DSLC_DEPLOY_TIMEOUT_SECONDS": "120",
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    # Every test starts from: v1 is the champion and nothing else is aliased.
    c = registry.client()
    c.set_registered_model_alias(models.name, registry.CHAMPION, models.good[0])
    if registry.get_alias(c, models.name, registry.PREVIOUS) is not None:
        c.delete_registered_model_alias(models.name, registry.PREVIOUS)


@pytest.fixture
def server(models: Models, env: None, tmp_path: Path) -> Iterator[ServingServer]:
    """The real serving process on a free port, serving v1."""
    srv = ServingServer(
        f"models:/{models.name}/{models.good[0]}",
        env={
            "DSLC_MLFLOW_TRACKING_URI": models.uri,
            "DSLC_MODEL_NAME": models.name,
            "DSLC_SERVING_ADMIN_TOKEN": TOKEN,
            "DSLC_LAKE_URL": f"file://{tmp_path / 'serving-lake'}",
            "DSLC_HOME": str(tmp_path / "serving-home"),
        },
        log_path=tmp_path / "serving.log",
    )
    srv.start(timeout=120)
    assert srv.wait_ready()["version"] == models.good[0]
    yield srv
    srv.stop()


def promote(models: Models, version: str) -> None:
    """What train's promote leaves: champion -> version, previous_champion -> v1."""
    c = registry.client()
    c.set_registered_model_alias(models.name, registry.PREVIOUS, models.good[0])
    c.set_registered_model_alias(models.name, registry.CHAMPION, version)


def aliases(models: Models) -> dict[str, str]:
    c = registry.client()
    return {a: str(v) for a, v in c.get_registered_model(models.name).aliases.items()}


def predict_version(server: ServingServer, models: Models) -> str:
    """Which version answers a real /predict now."""
    from dslc.deploy import smoke

    split_uri = registry.client().get_model_version(models.name, models.good[0]).tags["dslc.split"]
    rows = smoke.records_of(smoke.holdout_sample(models.lake, split_uri, 3))
    req = urllib.request.Request(
        f"{server.url}/predict",
        data=json.dumps(rows).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return str(json.loads(resp.read())["version"])


def run(models: Models, server: ServingServer, version: str, **kw: Any) -> dict[str, Any]:
    target = kw.pop("target", None) or LocalTarget(server.url, TOKEN, timeout=120)
    return deploy.deploy(
        models.name, version, target=target, lake=models.lake, actor="integration test", **kw
    )


def test_good_version_replaces_the_old_one(models: Models, server: ServingServer):
    v1, v2 = models.good
    promote(models, v2)
    record = run(models, server, v2, previous=v1, reason="better model")
    assert server.get("/ready")[1]["version"] == v2
    assert predict_version(server, models) == v2
    assert record["status"] == "deployed" and record["serving_before"] == v1
    smoke = record["smoke"]
    assert smoke["passed"] and smoke["rows"] == 200 and smoke["mismatches"] == 0
    assert smoke["max_abs_diff"] <= 1e-9 and smoke["version_seen"] == v2
    assert aliases(models) == {"champion": v2, "previous_champion": v1}

    stored = [r for r in records.list_records(models.lake, models.name) if r["version"] == v2]
    assert stored[-1] == record and stored[-1]["actor"] == "integration test"
    tag = json.loads(registry.client().get_model_version(models.name, v2).tags[records.TAG])
    assert tag["status"] == "deployed" and tag["record"] == record["record_uri"]
    assert tag["smoke"]["passed"] is True


def test_corrupted_artifact_fails_to_load_and_everything_is_restored(
    models: Models, server: ServingServer
):
    v1 = models.good[0]
    promote(models, models.corrupt)
    with pytest.raises(deploy.DeployError) as err:
        run(models, server, models.corrupt)
    message = str(err.value)
    assert f"deploy of {models.name} version {models.corrupt} to local" in message
    assert "failed at the rollout: the service failed to load" in message
    assert f"version {models.corrupt}: " in message  # then the service's own error
    assert f"service: the service still serves version {v1}" in message
    assert f"alias: champion -> version {v1}" in message
    assert server.get("/ready")[1]["version"] == v1
    assert predict_version(server, models) == v1
    assert aliases(models)["champion"] == v1
    last = records.list_records(models.lake, models.name)[-1]
    assert last["version"] == models.corrupt and last["status"] == "rolled_back"
    assert last["stage"] == "rollout" and last["smoke"] is None


class ArtifactReplacedAfterLoad(LocalTarget):
    """The real local target; once the service has loaded the version, its registered
    artifact is overwritten with another model (as a re-upload to the same path would)."""

    def __init__(self, *args: Any, models: Models, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.models = models

    def rollout(self, model_name: str, version: str) -> None:
        super().rollout(model_name, version)
        if version == self.models.swapped:
            c = registry.client()
            c.log_artifacts(self.models.swap_run, str(self.models.replacement), "model")


def test_version_failing_the_smoke_test_is_rolled_back(models: Models, server: ServingServer):
    v1 = models.good[0]
    promote(models, models.swapped)
    target = ArtifactReplacedAfterLoad(server.url, TOKEN, timeout=120, models=models)
    with pytest.raises(deploy.DeployError) as err:
        run(models, server, models.swapped, target=target)
    message = str(err.value)
    assert "failed at the smoke test: smoke test: " in message
    assert "holdout rows differ from the offline predictions by more than 1e-09" in message
    assert f"service: the service reloaded version {v1}" in message
    assert server.get("/ready")[1]["version"] == v1
    assert predict_version(server, models) == v1
    assert aliases(models)["champion"] == v1
    last = records.list_records(models.lake, models.name)[-1]
    assert last["status"] == "rolled_back" and last["stage"] == "smoke test"
    assert last["smoke"]["passed"] is False and last["smoke"]["version_seen"] == models.swapped
    assert last["smoke"]["mismatches"] > 0
    tag = json.loads(
        registry.client().get_model_version(models.name, models.swapped).tags[records.TAG]
    )
    assert tag["status"] == "rolled_back" and tag["stage"] == "smoke test"


# -- the deploy DAG --------------------------------------------------------------------------


@pytest.fixture
def deploy_dag(airflow_db: None, env: None):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags" / "deploy.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["deploy"]


def test_deploy_dag_is_manual_with_a_required_version(deploy_dag):
    from airflow.sdk.exceptions import ParamValidationError

    assert type(deploy_dag.timetable).__name__ == "NullTimetable"  # schedule=None: manual only
    assert deploy_dag.max_active_runs == 1
    assert deploy_dag.params.get_param("target").schema["enum"] == ["local", "kubernetes"]
    with pytest.raises(ParamValidationError, match="version"):
        deploy_dag.test(run_conf={"target": "local"})


def test_deploy_dag_serves_a_chosen_version_and_restores_on_failure(
    deploy_dag, models: Models, server: ServingServer, monkeypatch, capfd
):
    from dslc.settings import get_settings

    v1, v2 = models.good
    monkeypatch.setenv("DSLC_SERVING_URL", server.url)
    get_settings.cache_clear()

    dr = deploy_dag.test(run_conf={"version": int(v2), "target": "local", "reason": "it"})
    assert str(dr.state) == "success"
    assert server.get("/ready")[1]["version"] == v2
    assert aliases(models) == {"champion": v2, "previous_champion": v1}
    last = records.list_records(models.lake, models.name)[-1]
    assert last["version"] == v2 and last["status"] == "deployed"
    assert last["actor"].endswith(f"via deploy/{dr.run_id}") and last["reason"] == "it"

    capfd.readouterr()
    dr = deploy_dag.test(run_conf={"version": int(models.corrupt), "target": "local"})
    assert str(dr.state) == "failed"
    (ti,) = dr.get_task_instances()
    assert ti.try_number == 1  # no retry of a rolled-back deploy
    assert "the service failed to load" in capfd.readouterr().out
    assert server.get("/ready")[1]["version"] == v2
    assert aliases(models) == {"champion": v2, "previous_champion": v1}


# -- the deploy task at the end of train -------------------------------------------------------


def test_train_deploys_its_new_champion_and_skips_a_rejected_one(
    airflow_db: None, feature_lake: Lake, mlflow_server, tmp_path: Path, monkeypatch, capfd, caplog
):
    """A first champion is deployed to a service started empty; a rejected one is not."""
    from airflow.dag_processing.dagbag import DagBag

    from dslc.settings import get_settings

    name = f"flights_late_train_{uuid.uuid4().hex[:6]}"
    with serving_server(
        "none",
        wait_ready=False,
        env={
            "DSLC_MLFLOW_TRACKING_URI": mlflow_server.url,
            "DSLC_MODEL_NAME": name,
            "DSLC_SERVING_ADMIN_TOKEN": TOKEN,
            "DSLC_LAKE_URL": f"file://{tmp_path / 'serving-lake'}",
            "DSLC_HOME": str(tmp_path / "serving-home"),
        },
        log_path=tmp_path / "serving.log",
    ) as srv:
        assert srv.get("/ready")[0] == 503
        for key, value in {
            "DSLC_LAKE_URL": feature_lake.url,
            "DSLC_MLFLOW_TRACKING_URI": mlflow_server.url,
            "DSLC_MODEL_NAME": name,
            "DSLC_TRAIN_MIN_ROWS": "1000",
            "DSLC_SERVING_URL": srv.url,
            "DSLC_SERVING_ADMIN_TOKEN": TOKEN,
            "DSLC_DEPLOY_TIMEOUT_SECONDS": "120",
        }.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        bag = DagBag(str(ROOT / "dags" / "train.py"))
        assert not bag.import_errors, bag.import_errors
        dag = bag.dags["train"]
        conf = {"window_end": TRAIN_LAST_DAY, "window_days": 21, "max_iter": 30}

        dr = dag.test(run_conf={**conf, "reason": "first"})
        states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
        assert str(dr.state) == "success", states
        assert states["deploy"] == "success"
        assert srv.get("/ready")[1]["version"] == "1"
        (record,) = records.list_records(feature_lake, name)
        assert record["status"] == "deployed" and record["version"] == "1"
        assert record["previous"] is None and record["smoke"]["passed"]
        assert record["actor"].endswith(f"via train/{dr.run_id}")

        monkeypatch.setenv("DSLC_PROMOTE_AUC_FLOOR", "0.99")
        get_settings.cache_clear()
        dr = dag.test(run_conf={**conf, "reason": "rejected"})
        states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
        assert str(dr.state) == "success", states
        assert states["promote"] == "success" and states["deploy"] == "skipped"
        assert "nothing to deploy: version 2 was not promoted" in caplog.text + (
            capfd.readouterr().out
        )
        assert srv.get("/ready")[1]["version"] == "1"
        assert len(records.list_records(feature_lake, name)) == 1


# -- a deploy killed at a step (SIGKILL: no except or finally runs), then repaired ----------------

# Runs in a child process against the real service and MLflow. ``kill`` names the step at which
# the child SIGKILLs itself ("after load": right after POST /admin/load was accepted); ``fail``
# names a step at which it raises an ordinary error instead, so the deploy starts rolling back.
_KILLED_CHILD = r"""
import os, signal, sys

from dslc import deploy
from dslc.deploy.local import LocalTarget
from dslc.lake import Lake

what, model, version, url, token, lake_url, kill, fail, move_alias = sys.argv[1:10]


def die():
    os.kill(os.getpid(), signal.SIGKILL)


class KillAfterLoad(LocalTarget):
    def _load(self, model_name, version):
        started = super()._load(model_name, version)
        if kill == "after load":
            die()
        return started


def on_step(step):
    if step == kill:
        die()
    if step == fail:
        raise RuntimeError(f"injected failure at the {step}")


target, lake = KillAfterLoad(url, token, timeout=120), Lake(lake_url)
if what == "deploy":
    deploy.deploy(
        model, version, target=target, lake=lake, actor="killed test",
        move_alias=move_alias == "1", on_step=on_step,
    )
else:
    deploy.reconcile(model, target=target, lake=lake, actor="killed reconcile", on_step=on_step)
sys.exit(3)  # still alive: the step never came
"""


def killed(
    what: str,
    models: Models,
    server: ServingServer,
    version: str,
    *,
    kill: str,
    fail: str = "",
    move_alias: bool = False,
) -> None:
    """Run a deploy (or a reconcile) in a child process that SIGKILLs itself at ``kill``."""
    import os
    import signal
    import subprocess
    import sys

    args = [what, models.name, version, server.url, TOKEN, models.lake.url, kill, fail]
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_CHILD, *args, "1" if move_alias else "0"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def served(server: ServingServer) -> str:
    return str(server.get("/ready")[1]["version"])


def reconcile(models: Models, server: ServingServer) -> dict[str, Any]:
    target = LocalTarget(server.url, TOKEN, timeout=120)
    return deploy.reconcile(models.name, target=target, lake=models.lake, actor="test reconcile")


def last_record(models: Models) -> dict[str, Any]:
    return records.list_records(models.lake, models.name)[-1]


@pytest.mark.parametrize(
    ("kill", "fail"),
    [
        ("rollout", ""),  # champion moved by promote, nothing sent to the service
        ("after load", ""),  # /admin/load accepted: the service goes on loading v2 alone
        ("smoke test", ""),  # v2 serves, unchecked
        ("rollback", "smoke test"),  # the smoke test failed; nothing undone yet
        ("rollback alias", "smoke test"),  # the service is back on v1, champion still v2
    ],
)
def test_a_killed_deploy_is_rolled_back_by_reconcile(
    models: Models, server: ServingServer, kill: str, fail: str
):
    v1, v2 = models.good
    promote(models, v2)
    killed("deploy", models, server, v2, kill=kill, fail=fail)
    assert records.read_intent(models.lake, models.name) is not None

    found = reconcile(models, server)
    assert found["status"] == "repaired" and found["interrupted"]["action"] == "rolled_back"
    assert found["champion"] == found["serving"] == v1
    assert served(server) == v1 and predict_version(server, models) == v1
    assert aliases(models)["champion"] == v1
    last = last_record(models)
    assert last["version"] == v2 and last["status"] == "rolled_back"
    assert last["actor"] == "killed test" and last["reconciled_by"] == "test reconcile"
    assert "the deploy process died during the " in last["error"]
    assert records.read_intent(models.lake, models.name) is None
    assert reconcile(models, server)["status"] == "in_sync"


def test_a_deploy_killed_before_its_record_is_finished(models: Models, server: ServingServer):
    v1, v2 = models.good
    promote(models, v2)
    killed("deploy", models, server, v2, kill="record")
    found = reconcile(models, server)
    assert found["interrupted"]["action"] == "finished" and found["serving"] == v2
    assert served(server) == v2 and aliases(models) == {"champion": v2, "previous_champion": v1}
    last = last_record(models)
    assert last["version"] == v2 and last["status"] == "deployed" and last["smoke"]["passed"]
    tag = json.loads(registry.client().get_model_version(models.name, v2).tags[records.TAG])
    assert tag["status"] == "deployed"


def test_a_killed_manual_deploy_restores_both_aliases(models: Models, server: ServingServer):
    v1, v2 = models.good
    c = registry.client()
    c.set_registered_model_alias(models.name, registry.PREVIOUS, models.corrupt)
    killed("deploy", models, server, v2, kill="after load", move_alias=True)
    assert aliases(models) == {"champion": v2, "previous_champion": v1}
    reconcile(models, server)
    assert served(server) == v1
    assert aliases(models) == {"champion": v1, "previous_champion": models.corrupt}


def test_the_next_deploy_resumes_a_killed_one(models: Models, server: ServingServer):
    """Airflow's retry of a deploy task the worker lost: it redoes the deploy, no rollback."""
    v1, v2 = models.good
    promote(models, v2)
    killed("deploy", models, server, v2, kill="after load")
    record = run(models, server, v2)
    assert record["status"] == "deployed" and record["previous"] == v1
    assert served(server) == v2 and aliases(models) == {"champion": v2, "previous_champion": v1}
    interrupted, deployed = records.list_records(models.lake, models.name)[-2:]
    assert interrupted["status"] == "interrupted" and interrupted["stage"] == "rollout"
    assert deployed == record


def test_a_reconcile_killed_while_rolling_back_is_finished_by_the_next(
    models: Models, server: ServingServer
):
    v1, v2 = models.good
    promote(models, v2)
    killed("deploy", models, server, v2, kill="smoke test")
    killed("reconcile", models, server, v2, kill="rollback alias")
    assert served(server) == v1 and aliases(models)["champion"] == v2  # half undone
    found = reconcile(models, server)
    assert found["status"] == "repaired" and found["champion"] == found["serving"] == v1
    assert aliases(models)["champion"] == v1


def test_a_service_not_serving_the_champion_is_reported_with_both_versions(
    models: Models, server: ServingServer
):
    v1, v2 = models.good
    promote(models, v2)
    run(models, server, v2)
    # Someone points champion back at v1 by hand; nothing was interrupted.
    registry.client().set_registered_model_alias(models.name, registry.CHAMPION, v1)
    with pytest.raises(deploy.DeployError) as err:
        reconcile(models, server)
    message = str(err.value)
    assert f"the champion of {models.name} is version {v1}, but the local service at " in message
    assert f"serves version {v2}, and no interrupted deploy explains it" in message
    assert f"trigger the `deploy` DAG with version={v1}" in message
    assert served(server) == v2  # reported, not guessed at
