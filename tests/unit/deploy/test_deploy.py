"""dslc.deploy without servers: the deploy procedure, rollback paths, alias restore, records,
the local target against a fake serving API (httpx.MockTransport) and the smoke test's parts.

The registry is an in-memory fake of the few MlflowClient calls deploy makes; the integration
tests (tests/integration/test_deploy.py) run the same code against a real MLflow server and a
real serving process.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from dslc import deploy
from dslc.deploy import records, smoke
from dslc.deploy.local import LocalTarget
from dslc.lake import Lake
from dslc.model import registry, training
from dslc.model.spec import features_of
from dslc.usecases.flights.model import MODEL_FEATURES

MODEL = "flights_late"


# -- fakes -----------------------------------------------------------------------------------


class FakeVersion:
    def __init__(self, name: str, version: str, tags: dict[str, str] | None = None) -> None:
        self.name, self.version, self.tags = name, version, dict(tags or {})
        self.source = f"runs:/r{version}/model"


class FakeMlflow:
    """The MlflowClient calls of deploy and registry.get_alias, in memory, with a call log."""

    def __init__(self, versions: list[str], aliases: dict[str, str]) -> None:
        self.versions = {v: FakeVersion(MODEL, v, {"dslc.split": "file:///x"}) for v in versions}
        self.aliases = dict(aliases)
        self.calls: list[tuple[Any, ...]] = []
        self.fail_tags = False

    @staticmethod
    def _missing(what: str) -> Exception:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

        return MlflowException(f"{what} not found", error_code=RESOURCE_DOES_NOT_EXIST)

    def get_model_version(self, name: str, version: str) -> FakeVersion:
        if name != MODEL or str(version) not in self.versions:
            raise self._missing(f"version {version}")
        return self.versions[str(version)]

    def get_model_version_by_alias(self, name: str, alias: str) -> FakeVersion:
        if alias not in self.aliases:
            raise self._missing(f"alias {alias}")
        return self.versions[self.aliases[alias]]

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.calls.append(("set_alias", alias, str(version)))
        self.aliases[alias] = str(version)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self.calls.append(("delete_alias", alias))
        self.aliases.pop(alias, None)

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        if self.fail_tags:
            raise ConnectionError("MLflow went away")
        self.versions[str(version)].tags[key] = value


class FakeTarget:
    """A target that records calls; ``fail`` makes a step raise."""

    name = "fake"
    endpoint = "http://fake-serving"

    def __init__(self, serving: str | None = "1", fail: dict[str, Exception] | None = None):
        self.serving = serving
        self.fail = fail or {}
        self.calls: list[tuple[Any, ...]] = []

    def current_version(self, model_name: str) -> str | None:
        self.calls.append(("current",))
        if "current" in self.fail:
            raise self.fail["current"]
        return self.serving

    def rollout(self, model_name: str, version: str) -> None:
        self.calls.append(("rollout", version))
        if "rollout" in self.fail:
            raise self.fail["rollout"]
        self.serving = version

    def rollback(self, model_name: str, failed: str, previous: str | None) -> str:
        self.calls.append(("rollback", failed, previous))
        if "rollback" in self.fail:
            raise self.fail["rollback"]
        self.serving = previous
        return f"serving {previous} again"

    def settle(self) -> None:
        self.calls.append(("settle",))


PASSED = {"rows": 200, "max_abs_diff": 0.0, "mismatches": 0, "version_seen": "2", "passed": True}


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(f"file://{tmp_path / 'lake'}")


@pytest.fixture
def mlflow(monkeypatch) -> FakeMlflow:
    """v1..v3 registered; v2 was just promoted over v1 (what train's promote leaves)."""
    fake = FakeMlflow(["1", "2", "3"], {"champion": "2", "previous_champion": "1"})
    monkeypatch.setattr(registry, "client", lambda uri=None: fake)
    return fake


@pytest.fixture
def smoke_result(monkeypatch) -> dict[str, Any]:
    """The smoke test's outcome: PASSED unless a test sets ``["raise"]``."""
    state: dict[str, Any] = {"raise": None, "calls": []}

    def fake_smoke(model_name, version, **kw):
        state["calls"].append((version, kw["endpoint"], kw["rows"]))
        if state["raise"] is not None:
            raise state["raise"]
        return {**PASSED, "version_seen": version}

    monkeypatch.setattr(smoke, "smoke_test", fake_smoke)
    return state


def run(target, lake, **kw):
    return deploy.deploy(
        MODEL, kw.pop("version", "2"), target=target, lake=lake, actor="ana via test", **kw
    )


# -- the procedure -----------------------------------------------------------------------------


def test_good_deploy_serves_the_version_and_records_it(lake, mlflow, smoke_result):
    target = FakeTarget(serving="1")
    record = run(target, lake, reason="weekly retrain")
    assert target.calls == [("current",), ("rollout", "2")]
    assert target.serving == "2"
    assert mlflow.aliases == {"champion": "2", "previous_champion": "1"}
    assert mlflow.calls == []  # train's promote already moved the aliases
    assert record["status"] == "deployed" and record["previous"] == "1"
    assert record["serving_before"] == "1" and record["smoke"]["passed"]

    (stored,) = records.list_records(lake, MODEL)
    assert stored == record
    assert stored["actor"] == "ana via test" and stored["reason"] == "weekly retrain"
    assert stored["record_uri"].startswith(lake.uri("deployments", MODEL)) and stored[
        "record_uri"
    ].endswith("-v2.json")
    tag = json.loads(mlflow.versions["2"].tags[records.TAG])
    assert tag["status"] == "deployed" and tag["actor"] == "ana via test"
    assert tag["smoke"] == {"passed": True, "rows": 200, "max_abs_diff": 0.0, "version_seen": "2"}
    assert tag["record"] == stored["record_uri"]


def test_failed_load_rolls_back_service_and_alias(lake, mlflow, smoke_result):
    target = FakeTarget(
        serving="1",
        fail={"rollout": deploy.DeployError("the service failed to load version 2: corrupt")},
    )
    with pytest.raises(deploy.DeployError) as err:
        run(target, lake)
    message = str(err.value)
    assert "deploy of flights_late version 2 to fake (http://fake-serving) failed at the " in (
        message
    )
    assert "rollout: the service failed to load version 2: corrupt" in message
    assert "Rolled back: service: serving 1 again; alias: champion -> version 1" in message
    assert target.calls[-1] == ("rollback", "2", "1") and target.serving == "1"
    assert mlflow.aliases["champion"] == "1"
    assert smoke_result["calls"] == []  # never smoke-tested what did not load
    (stored,) = records.list_records(lake, MODEL)
    assert stored["status"] == "rolled_back" and stored["stage"] == "rollout"
    assert f"Record: {stored['record_uri']}" in message
    assert json.loads(mlflow.versions["2"].tags[records.TAG])["status"] == "rolled_back"
    # The error carries the record, so a notification can tell a rollback from a refusal.
    assert err.value.record == stored


def test_failed_smoke_test_rolls_back_and_keeps_the_comparison(lake, mlflow, smoke_result):
    result = {**PASSED, "passed": False, "mismatches": 12, "max_abs_diff": 0.3}
    smoke_result["raise"] = smoke.SmokeTestError("smoke test: 12 of 200 rows differ", result)
    target = FakeTarget(serving="1")
    with pytest.raises(deploy.DeployError, match="failed at the smoke test: smoke test: 12 of 200"):
        run(target, lake)
    assert target.serving == "1" and mlflow.aliases["champion"] == "1"
    (stored,) = records.list_records(lake, MODEL)
    assert stored["smoke"] == result
    tag = json.loads(mlflow.versions["2"].tags[records.TAG])
    assert tag["smoke"]["passed"] is False and tag["stage"] == "smoke test"


def test_an_unexpected_error_also_rolls_back(lake, mlflow, smoke_result):
    smoke_result["raise"] = KeyError("predictions")
    target = FakeTarget(serving="1")
    with pytest.raises(deploy.DeployError, match=r"smoke test: KeyError: 'predictions'"):
        run(target, lake)
    assert target.serving == "1" and mlflow.aliases["champion"] == "1"


def test_unreachable_service_restores_the_alias_without_touching_the_service(
    lake, mlflow, smoke_result
):
    target = FakeTarget(fail={"current": deploy.DeployError("service not reachable")})
    with pytest.raises(
        deploy.DeployError, match="failed at the target check: service not reachable"
    ):
        run(target, lake)
    assert ("rollout", "2") not in target.calls
    assert mlflow.aliases["champion"] == "1"


def test_alias_moved_meanwhile_is_left_alone(lake, mlflow, smoke_result):
    def rollout_while_another_run_promotes(model_name, version):
        mlflow.aliases["champion"] = "3"  # another run won meanwhile
        raise deploy.DeployError("load failed")

    target = FakeTarget(serving="1")
    target.rollout = rollout_while_another_run_promotes  # type: ignore[method-assign]
    with pytest.raises(deploy.DeployError) as err:
        run(target, lake)
    assert mlflow.aliases["champion"] == "3"
    assert "champion left at version 3: it no longer points at the failed version 2" in str(
        err.value
    )


def test_redeploying_the_served_version_rolls_back_to_the_previous_one(lake, mlflow, smoke_result):
    smoke_result["raise"] = smoke.SmokeTestError("differs")
    target = FakeTarget(serving="2")  # already serving the version that now fails
    with pytest.raises(deploy.DeployError):
        run(target, lake)
    assert target.calls[-1] == ("rollback", "2", "1")


def test_first_deploy_failing_removes_the_champion_alias(lake, mlflow, smoke_result):
    mlflow.aliases = {"champion": "1"}
    smoke_result["raise"] = smoke.SmokeTestError("differs")
    target = FakeTarget(serving=None)
    with pytest.raises(deploy.DeployError) as err:
        run(target, lake, version="1")
    assert mlflow.aliases == {}
    assert "champion removed (there is no previous version to go back to)" in str(err.value)
    assert target.calls[-1] == ("rollback", "1", None)


def test_failed_rollback_says_so_and_still_restores_the_alias(lake, mlflow, smoke_result):
    smoke_result["raise"] = smoke.SmokeTestError("differs")
    target = FakeTarget(serving="1", fail={"rollback": deploy.DeployError("service down")})
    with pytest.raises(deploy.DeployError) as err:
        run(target, lake)
    assert "ROLLBACK INCOMPLETE, check by hand: service: ROLLBACK FAILED: DeployError: " in str(
        err.value
    )
    assert mlflow.aliases["champion"] == "1"
    (stored,) = records.list_records(lake, MODEL)
    assert stored["status"] == "rollback_failed" and err.value.record == stored


def test_train_refuses_a_version_that_is_not_the_champion(lake, mlflow, smoke_result):
    mlflow.aliases = {"champion": "1"}  # e.g. a rollback moved it before this task was cleared
    target = FakeTarget(serving="1")
    with pytest.raises(deploy.DeployError) as err:
        run(target, lake)
    assert "points at version 1, not 2" in str(err.value)
    assert "trigger the `deploy` DAG with version=2" in str(err.value)
    assert target.calls == [] and mlflow.calls == []
    assert records.list_records(lake, MODEL) == []
    assert err.value.record is None  # refused before anything moved: nothing rolled back


def test_unknown_version_changes_nothing(lake, mlflow, smoke_result):
    target = FakeTarget()
    with pytest.raises(registry.RegistryError, match="has no version '9'"):
        run(target, lake, version="9", move_alias=True)
    assert target.calls == [] and mlflow.calls == []


def test_manual_deploy_moves_both_aliases(lake, mlflow, smoke_result):
    target = FakeTarget(serving="2")
    record = run(target, lake, version="1", move_alias=True, reason="roll back")
    assert mlflow.aliases == {"champion": "1", "previous_champion": "2"}
    assert record["previous"] == "2" and target.serving == "1"


def test_manual_deploy_failing_restores_both_aliases_exactly(lake, mlflow, smoke_result):
    mlflow.aliases = {"champion": "3", "previous_champion": "2"}
    smoke_result["raise"] = smoke.SmokeTestError("differs")
    target = FakeTarget(serving="3")
    with pytest.raises(deploy.DeployError) as err:
        run(target, lake, version="1", move_alias=True)
    assert mlflow.aliases == {"champion": "3", "previous_champion": "2"}
    assert "champion -> version 3, previous_champion -> 2" in str(err.value)
    assert target.serving == "3"


def test_manual_deploy_of_the_champion_moves_no_alias(lake, mlflow, smoke_result):
    run(FakeTarget(serving="1"), lake, version="2", move_alias=True)
    assert mlflow.calls == []


# -- records ---------------------------------------------------------------------------------


def test_a_successful_deploy_without_its_record_fails_but_does_not_roll_back(
    lake, mlflow, smoke_result, monkeypatch
):
    working = lake.write_text
    monkeypatch.setattr(lake, "write_text", records_fail(lake, OSError("disk full")))
    target = FakeTarget(serving="1")
    with pytest.raises(deploy.DeployError) as err:
        run(target, lake)
    assert "was deployed to fake and passed its smoke test, but the record could not be " in str(
        err.value
    )
    assert "OSError: disk full" in str(err.value)
    assert target.serving == "2" and ("rollback", "2", "1") not in target.calls
    assert mlflow.aliases["champion"] == "2"
    # The intent stays behind: the next reconcile writes the record the deploy could not.
    assert records.read_intent(lake, MODEL)["step"] == "record"
    monkeypatch.setattr(lake, "write_text", working)
    found = deploy.reconcile(MODEL, target=target, lake=lake, actor="drift monitor")
    assert found["status"] == "repaired" and found["interrupted"]["action"] == "finished"
    (stored,) = records.list_records(lake, MODEL)
    assert stored["status"] == "deployed" and stored["reconciled_by"] == "drift monitor"
    assert records.read_intent(lake, MODEL) is None


def records_fail(lake: Lake, error: Exception) -> Any:
    """``lake.write_text`` that fails for deployment records and works for the intent."""
    real = lake.write_text

    def write_text(text: str, *parts: str) -> None:
        if parts[-1] != records.INTENT:
            raise error
        real(text, *parts)

    return write_text


def test_a_deploy_that_cannot_write_its_intent_never_touches_the_service(
    lake, mlflow, smoke_result, monkeypatch
):
    monkeypatch.setattr(lake, "write_text", lambda *a, **k: (_ for _ in ()).throw(OSError("ro")))
    target = FakeTarget(serving="1")
    with pytest.raises(deploy.DeployError) as err:
        run(target, lake)
    assert "could not write the deploy's intent before its rollout" in str(err.value)
    assert "OSError: ro" in str(err.value) and "Make the lake (DSLC_LAKE_URL) writable" in str(
        err.value
    )
    assert ("rollout", "2") not in target.calls and target.serving == "1"
    assert smoke_result["calls"] == []


def test_a_failed_deploy_without_its_record_still_reports_the_failure(
    lake, mlflow, smoke_result, monkeypatch
):
    monkeypatch.setattr(lake, "write_text", records_fail(lake, OSError("x")))
    mlflow.fail_tags = True
    smoke_result["raise"] = smoke.SmokeTestError("12 rows differ")
    with pytest.raises(deploy.DeployError) as err:
        run(FakeTarget(serving="1"), lake)
    assert "12 rows differ" in str(err.value)
    assert "(the deployment record could not be written)" in str(err.value)
    assert mlflow.aliases["champion"] == "1"


# -- a deploy killed at a step, then reconciled ---------------------------------------------------


class Killed(BaseException):
    """The process dying at a step: no ``except Exception`` handler runs (the integration tests
    SIGKILL a real process; this is the same path without one)."""


def kill_at(step: str) -> Any:
    def on_step(name: str) -> None:
        if name == step:
            raise Killed(name)

    return on_step


def aliases_of(mlflow: FakeMlflow) -> dict[str, str]:
    return dict(mlflow.aliases)


@pytest.mark.parametrize(
    ("step", "smoke_fails", "serving_when_killed"),
    [
        ("rollout", False, "1"),  # intent written, /admin/load not sent
        ("smoke test", False, "2"),  # the new version serves, unchecked
        ("rollback", True, "2"),  # the smoke test failed, nothing undone yet
        ("rollback alias", True, "1"),  # the service is back, champion not yet
    ],
)
def test_a_deploy_killed_at_a_step_is_rolled_back_by_reconcile(
    lake, mlflow, smoke_result, step, smoke_fails, serving_when_killed
):
    target = FakeTarget(serving="1")
    if smoke_fails:
        smoke_result["raise"] = smoke.SmokeTestError("12 rows differ")
    with pytest.raises(Killed):
        run(target, lake, on_step=kill_at(step))
    assert target.serving == serving_when_killed and records.list_records(lake, MODEL) == []

    found = deploy.reconcile(MODEL, target=target, lake=lake, actor="drift monitor")
    assert found["status"] == "repaired" and found["interrupted"]["action"] == "rolled_back"
    assert found["champion"] == found["serving"] == "1" and target.serving == "1"
    assert mlflow.aliases["champion"] == "1"
    (stored,) = records.list_records(lake, MODEL)
    assert stored["status"] == "rolled_back" and stored["reconciled_by"] == "drift monitor"
    died_in = "rollback" if step.startswith("rollback") else step  # one intent for both halves
    assert f"the deploy process died during the {died_in}" in stored["error"]
    if smoke_fails:
        assert stored["stage"] == "smoke test" and "12 rows differ" in stored["error"]
    assert records.read_intent(lake, MODEL) is None
    assert found["interrupted"]["record"] == stored  # for drift_monitor's notification
    # Reconciled once is reconciled: the next look finds everything in place.
    again = deploy.reconcile(MODEL, target=target, lake=lake)
    assert again["status"] == "in_sync" and again["interrupted"] is None


def test_a_deploy_killed_before_its_record_is_finished_not_undone(lake, mlflow, smoke_result):
    target = FakeTarget(serving="1")
    with pytest.raises(Killed):
        run(target, lake, on_step=kill_at("record"))
    found = deploy.reconcile(MODEL, target=target, lake=lake)
    assert found["status"] == "repaired" and found["interrupted"]["action"] == "finished"
    assert target.serving == "2" and mlflow.aliases["champion"] == "2"
    (stored,) = records.list_records(lake, MODEL)
    assert stored["status"] == "deployed" and stored["smoke"]["passed"]
    assert "reconcile wrote this record" in stored["note"]


@pytest.mark.parametrize("step", ["rollout", "smoke test"])
def test_the_next_deploy_of_the_same_version_resumes_a_killed_one(lake, mlflow, smoke_result, step):
    target = FakeTarget(serving="1")
    with pytest.raises(Killed):
        run(target, lake, on_step=kill_at(step))
    record = run(target, lake)  # e.g. Airflow's retry of the task
    assert record["status"] == "deployed" and record["previous"] == "1"
    assert target.serving == "2" and aliases_of(mlflow) == {
        "champion": "2",
        "previous_champion": "1",
    }
    interrupted, deployed = records.list_records(lake, MODEL)
    assert interrupted["status"] == "interrupted" and interrupted["stage"] == step
    assert deployed == record and records.read_intent(lake, MODEL) is None


def test_a_manual_deploy_killed_after_moving_the_alias_restores_both_aliases(
    lake, mlflow, smoke_result
):
    target = FakeTarget(serving="2")
    with pytest.raises(Killed):
        run(target, lake, version="3", move_alias=True, on_step=kill_at("rollout"))
    assert aliases_of(mlflow) == {"champion": "3", "previous_champion": "2"}
    found = deploy.reconcile(MODEL, target=target, lake=lake)
    assert found["status"] == "repaired" and target.serving == "2"
    assert aliases_of(mlflow) == {"champion": "2", "previous_champion": "1"}


def test_a_manual_deploy_killed_before_moving_the_alias_leaves_the_service_alone(
    lake, mlflow, smoke_result
):
    target = FakeTarget(serving="2")
    with pytest.raises(Killed):
        run(target, lake, version="3", move_alias=True, on_step=kill_at("aliases"))
    found = deploy.reconcile(MODEL, target=target, lake=lake)
    assert found["status"] == "repaired" and target.serving == "2"
    assert not any(call[0] in ("rollout", "rollback") for call in target.calls)
    assert aliases_of(mlflow) == {"champion": "2", "previous_champion": "1"}


def test_champion_and_service_disagreeing_for_no_known_reason_is_an_error(
    lake, mlflow, smoke_result
):
    run(FakeTarget(serving="1"), lake)  # a deploy on record: v2 served
    target = FakeTarget(serving="1")  # ... yet the service serves v1 (restarted by hand, say)
    with pytest.raises(deploy.DeployError) as err:
        deploy.reconcile(MODEL, target=target, lake=lake)
    message = str(err.value)
    assert "the champion of flights_late is version 2, but the fake service at " in message
    assert "serves version 1, and no interrupted deploy explains it" in message
    assert "trigger the `deploy` DAG with version=2" in message
    assert "The last deployment record: version 2 deployed" in message
    found = deploy.reconcile(MODEL, target=target, lake=lake, strict=False)
    assert found["status"] == "mismatch" and found["champion"] == "2" and found["serving"] == "1"
    assert target.serving == "1"  # reported, never "repaired" by guessing


def test_an_interrupted_deploy_left_for_a_run_in_flight_is_not_touched(lake, mlflow, smoke_result):
    target = FakeTarget(serving="1")
    with pytest.raises(Killed):
        run(target, lake, on_step=kill_at("smoke test"))
    calls = list(target.calls)
    found = deploy.reconcile(MODEL, target=target, lake=lake, repair=False)
    assert found["status"] == "pending" and "died during the smoke test" in found["message"]
    assert target.calls == calls and records.read_intent(lake, MODEL) is not None
    assert run(target, lake)["status"] == "deployed"  # the retry takes it over


def test_a_model_never_deployed_has_nothing_to_reconcile(lake, mlflow):
    target = FakeTarget(serving="1")
    found = deploy.reconcile(MODEL, target=target, lake=lake)
    assert found["status"] == "never_deployed" and target.calls == []


def test_record_keys_sort_by_time():
    import datetime as dt

    a = records.key(MODEL, "2", dt.datetime(2013, 4, 1, 12, 0, 0, 5, tzinfo=dt.UTC))
    b = records.key(MODEL, "10", dt.datetime(2013, 4, 1, 12, 0, 1, tzinfo=dt.UTC))
    assert a == "deployments/flights_late/20130401T120000.000005Z-v2.json"
    assert sorted([b, a]) == [a, b]


# -- the local target against a fake serving API ---------------------------------------------


class FakeServing:
    """The serving admin contract: /ready, /admin/status, /admin/load with a scripted outcome."""

    def __init__(self, serving: str | None = "1", outcome: str = "loaded", polls: int = 0):
        self.serving = serving
        self.outcome = outcome  # loaded | failed | slow (loads after `polls` status reads)
        self.polls = polls
        self.last: dict[str, Any] | None = None
        self.requests: list[str] = []
        self.pending: str | None = None

    def _finish(self) -> None:
        if self.pending is None:
            return
        self.polls -= 1
        if self.polls < 0:
            self.serving, self.pending = self.pending, None
            self.last = {**(self.last or {}), "state": "loaded"}

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append(f"{request.method} {path}")
        if path.startswith("/admin") and request.headers.get("authorization") != "Bearer s3cret":
            return httpx.Response(401, json={"detail": "missing or wrong bearer token"})
        if path == "/ready":
            if self.serving is None:
                return httpx.Response(503, json={"detail": "no model loaded"})
            return httpx.Response(200, json={"model": MODEL, "version": self.serving})
        if path == "/admin/status":
            self._finish()
            return httpx.Response(200, json={"serving": None, "last_load": self.last})
        if path == "/admin/load":
            version = json.loads(request.content)["uri"].rsplit("/", 1)[1]
            if self.pending is not None:
                return httpx.Response(409, json={"detail": "still loading"})
            if version == self.serving:
                return httpx.Response(200, json={"status": "serving", "version": version})
            self.last = {"version": version, "state": "loading", "error": None}
            if self.outcome == "failed" and version != "1":
                self.last.update(state="failed", error="RegistryError: not a skops model")
            elif self.outcome == "slow" and version != "1":
                self.pending = version
            else:
                self.serving = version
                self.last["state"] = "loaded"
            return httpx.Response(202, json={"status": "loading", "version": version})
        return httpx.Response(404)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def local(server: FakeServing, token: str | None = "s3cret", timeout: float = 10.0) -> LocalTarget:
    clock = FakeClock()
    return LocalTarget(
        "http://serving",
        token,
        timeout=timeout,
        poll_interval=1.0,
        http=httpx.Client(transport=httpx.MockTransport(server.handler)),
        sleep=clock.sleep,
        clock=clock,
    )


def test_local_rollout_loads_and_waits_for_ready():
    server = FakeServing(serving="1")
    target = local(server)
    assert target.current_version(MODEL) == "1"
    target.rollout(MODEL, "2")
    assert server.serving == "2"
    assert "POST /admin/load" in server.requests


def test_local_rollout_of_the_served_version_is_a_no_op():
    server = FakeServing(serving="2")
    local(server).rollout(MODEL, "2")
    assert server.requests == ["POST /admin/load"]


def test_local_failed_load_names_the_error_and_old_version_keeps_serving():
    server = FakeServing(serving="1", outcome="failed")
    target = local(server)
    with pytest.raises(deploy.DeployError) as err:
        target.rollout(MODEL, "2")
    assert "the service failed to load flights_late version 2: RegistryError: not a skops" in (
        str(err.value)
    )
    assert target.rollback(MODEL, "2", "1") == (
        "the service still serves version 1 (the new version never took over)"
    )
    assert server.serving == "1"


def test_local_timeout_then_rollback_waits_for_the_late_load_and_reloads_the_old_version():
    # The load of v2 takes 30 polls, the timeout allows ~10: the rollout times out, then the
    # late load swaps v2 in; the rollback must end with v1 serving, not v2.
    server = FakeServing(serving="1", outcome="slow", polls=30)
    target = local(server, timeout=10)
    with pytest.raises(deploy.DeployError, match="did not serve flights_late version 2 within 10"):
        target.rollout(MODEL, "2")
    target.timeout = 100
    note = target.rollback(MODEL, "2", "1")
    assert note == "the service reloaded version 1"
    assert server.serving == "1" and server.pending is None


def test_local_wrong_token_and_no_token_are_clear():
    with pytest.raises(deploy.DeployError, match=r"refused the token \(401\): set DSLC_SERV"):
        local(FakeServing(), token="wrong").rollout(MODEL, "2")
    with pytest.raises(deploy.DeployError, match="no serving admin token: set DSLC_SERVING_ADMIN"):
        local(FakeServing(), token=None).rollout(MODEL, "2")


def test_local_unreachable_service_is_clear():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    target = LocalTarget(
        "http://serving:1", "t", timeout=1, http=httpx.Client(transport=httpx.MockTransport(refuse))
    )
    with pytest.raises(deploy.DeployError) as err:
        target.current_version(MODEL)
    assert "the serving service at http://serving:1 is not reachable" in str(err.value)
    assert "set DSLC_SERVING_URL" in str(err.value)


def test_local_service_of_another_model_is_refused():
    target = local(FakeServing())
    with pytest.raises(deploy.DeployError, match="serves model 'flights_late', not 'other'"):
        target.current_version("other")


def test_local_rollback_without_previous_says_the_failed_version_still_serves():
    target = local(FakeServing(serving="1"))
    assert "still serves the failed version 1: there is no previous version" in target.rollback(
        MODEL, "1", None
    )


# -- the smoke test's parts ------------------------------------------------------------------


def test_compare_counts_rows_beyond_the_tolerance_and_nan_as_wrong():
    offline = np.array([0.1, 0.2, 0.3, 0.4])
    same = smoke.compare(offline, [0.1, 0.2, 0.3, 0.4])
    assert same["mismatches"] == 0 and same["max_abs_diff"] == 0.0
    off = smoke.compare(offline, [0.1, 0.2 + 1e-8, 0.3 + 5e-10, math.nan])
    assert off["mismatches"] == 2 and off["max_abs_diff"] == math.inf
    assert off["worst"]["row"] == 3


def _lake_with_split(lake: Lake, days: int = 6) -> str:
    from tests.unit.model.test_training import publish_days

    published = publish_days(lake, days)
    parts = []
    for i, ds in enumerate(published):
        key = Lake.partition("features", "flights", ds)
        manifest = lake.manifest(key)
        assert manifest is not None
        parts.append(
            {
                "ds": ds,
                "partition": key,
                "content_hash": manifest.content_hash,
                "split": "holdout" if i >= days - 2 else "train",
            }
        )
    lake.write_text(json.dumps({"partitions": parts}), "training/flights/run=r1/split.json")
    return lake.uri("training/flights/run=r1/split.json")


def test_holdout_sample_is_deterministic_and_spans_the_holdout(lake):
    uri = _lake_with_split(lake)
    a = smoke.holdout_sample(lake, uri, 50)
    b = smoke.holdout_sample(lake, uri, 50)
    assert len(a) == 50 and a.equals(b)
    assert sorted(a["ds"].unique()) == ["2013-01-05", "2013-01-06"]
    assert len(smoke.holdout_sample(lake, uri, 10_000)) == 600  # every holdout row


def test_holdout_sample_survives_a_republished_partition(lake, caplog):
    uri = _lake_with_split(lake)
    from tests.unit.model.test_training import synthetic_features

    lake.publish(
        Lake.partition("features", "flights", "2013-01-06"), synthetic_features("2013-01-06", 50)
    )
    assert len(smoke.holdout_sample(lake, uri, 10_000)) == 350
    assert "changed since the split was assembled" in caplog.text


def test_split_in_another_lake_is_a_clear_error(lake):
    with pytest.raises(smoke.SmokeTestError, match="is not in the lake"):
        smoke.split_key(lake, "s3://elsewhere/training/flights/run=x/split.json")


def test_records_follow_the_serving_contract(lake):
    from tests.unit.model.test_training import synthetic_features

    df = synthetic_features("2013-01-02", n=40)
    recs = smoke.records_of(df)
    assert len(recs) == 40
    assert list(recs[0]) == [*MODEL_FEATURES, "ds", "flight"]
    nan_rows = [i for i, t in enumerate(df["temp"]) if math.isnan(t)]
    assert nan_rows and all(recs[i]["temp"] is None for i in nan_rows)
    assert all(isinstance(r["distance"], float) and isinstance(r["carrier"], str) for r in recs)
    assert recs[3]["ds"] == "2013-01-02" and recs[3]["flight"] == 3
    json.dumps(recs, allow_nan=False)  # strict JSON: no NaN anywhere


@pytest.fixture(scope="module")
def small_pipeline():
    from tests.unit.model.test_training import synthetic_features

    return training.fit(synthetic_features("2013-01-01", n=400), training.TrainParams(max_iter=5))


def _serving_that_answers(pipeline, version: str, shift: float = 0.0):
    import pandas as pd

    def handler(request: httpx.Request) -> httpx.Response:
        recs = json.loads(request.content)
        df = pd.DataFrame(recs).loc[:, MODEL_FEATURES]
        p = pipeline.predict_proba(features_of(df.fillna(value=np.nan)))[:, 1] + shift
        return httpx.Response(
            200,
            json={
                "model": MODEL,
                "version": version,
                "predictions": [{"probability": float(x), "late": bool(x >= 0.5)} for x in p],
            },
        )

    return httpx.Client(transport=httpx.MockTransport(handler))


def _smoke(lake, pipeline, monkeypatch, http, version="2"):
    uri = _lake_with_split(lake)
    fake = FakeMlflow(["2"], {})
    fake.versions["2"].tags["dslc.split"] = uri
    monkeypatch.setattr(registry, "client", lambda uri=None: fake)
    monkeypatch.setattr(registry, "load_version", lambda name, v, uri=None: pipeline)
    return smoke.smoke_test(
        MODEL, version, lake=lake, endpoint="http://serving", rows=120, http=http
    )


def test_smoke_test_passes_when_the_service_answers_like_the_model(
    lake, small_pipeline, monkeypatch
):
    result = _smoke(lake, small_pipeline, monkeypatch, _serving_that_answers(small_pipeline, "2"))
    assert result["passed"] and result["rows"] == 120 and result["max_abs_diff"] == 0.0
    assert result["version_seen"] == "2" and result["split"].endswith("run=r1/split.json")


def test_smoke_test_fails_on_a_tiny_difference(lake, small_pipeline, monkeypatch):
    http = _serving_that_answers(small_pipeline, "2", shift=1e-8)
    with pytest.raises(smoke.SmokeTestError) as err:
        _smoke(lake, small_pipeline, monkeypatch, http)
    assert "120 of 120 holdout rows differ from the offline predictions by more than 1e-09" in (
        str(err.value)
    )
    assert err.value.result is not None and not err.value.result["passed"]


def test_smoke_test_fails_when_another_version_answers(lake, small_pipeline, monkeypatch):
    http = _serving_that_answers(small_pipeline, "1")
    with pytest.raises(smoke.SmokeTestError, match="answered with version 1, not 2"):
        _smoke(lake, small_pipeline, monkeypatch, http)


def test_smoke_test_reports_a_rejected_request(lake, small_pipeline, monkeypatch):
    http = httpx.Client(
        transport=httpx.MockTransport(
            lambda r: httpx.Response(422, json={"detail": [{"loc": ["body", 0, "temp"]}]})
        )
    )
    with pytest.raises(smoke.SmokeTestError, match=r"POST http://serving/predict answered 422"):
        _smoke(lake, small_pipeline, monkeypatch, http)


def test_version_without_a_split_cannot_be_smoke_tested(lake, monkeypatch):
    fake = FakeMlflow(["2"], {})
    fake.versions["2"].tags.clear()
    monkeypatch.setattr(registry, "client", lambda uri=None: fake)
    with pytest.raises(smoke.SmokeTestError, match=r"has no 'dslc\.split' tag"):
        smoke.smoke_test(MODEL, "2", lake=lake, endpoint="http://serving", rows=5)


# -- the alias compare-and-swap ----------------------------------------------------------------


def test_moving_the_champion_refuses_when_it_moved_since_the_caller_looked(mlflow):
    with pytest.raises(registry.PromotionConflictError, match="a moment ago and now at 2"):
        registry.move_champion(mlflow, MODEL, "3", expected="1")
    assert mlflow.aliases == {"champion": "2", "previous_champion": "1"} and mlflow.calls == []


def test_a_writer_moving_the_champion_right_after_this_one_is_reported(mlflow):
    real_set = mlflow.set_registered_model_alias

    def racing_set(name: str, alias: str, version: str) -> None:
        real_set(name, alias, version)
        if alias == "champion" and version == "3":
            real_set(name, "champion", "1")  # another writer, a moment later

    mlflow.set_registered_model_alias = racing_set  # type: ignore[method-assign]
    with pytest.raises(registry.PromotionConflictError, match="moved to version 1 by another"):
        registry.move_champion(mlflow, MODEL, "3", expected="2")


def test_champion_moves_before_previous_champion(mlflow):
    registry.move_champion(mlflow, MODEL, "3", expected="2")
    assert mlflow.calls == [("set_alias", "champion", "3"), ("set_alias", "previous_champion", "2")]
