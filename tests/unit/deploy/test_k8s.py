"""The Kubernetes target without a cluster.

* The rendered manifests are validated against the Kubernetes 1.36 OpenAPI schema (strict:
  unknown fields are errors) with kubernetes-validate, and checked for what the issue asks:
  version pinned, probes, resources, non-root.
* The rollout / rollback logic runs through the real ``kubernetes`` client (AppsV1Api,
  CoreV1Api, its serialisation and model classes); only the HTTP layer underneath is a fake
  API server (:class:`FakeCluster`) that records every request and plays the deployment
  controller: revisions, ReplicaSets, rollout progress, ``ProgressDeadlineExceeded``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import pytest
from kubernetes import client

from dslc import deploy
from dslc.deploy import kubernetes as k8s
from dslc.deploy import records, smoke
from dslc.lake import Lake
from dslc.model import registry
from tests.unit.deploy.test_deploy import PASSED, FakeMlflow

MODEL = "flights_late"
NS = "dslc"
# kubernetes (python client) 36 is generated from Kubernetes 1.36's OpenAPI.
K8S_VERSION = "1.36"


def cfg(**kw: Any) -> k8s.ManifestConfig:
    return k8s.ManifestConfig(
        **{
            "namespace": NS,
            "image": "registry.example/dslc:0.1.0",
            "mlflow_uri": "http://mlflow.dslc:5000",
            "lake_url": "s3://lake/dslc",
            **kw,
        }
    )


# -- manifests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> tuple[dict[str, Any], dict[str, Any]]:
    deployment, service = k8s.manifests(cfg(), MODEL, "7")
    return deployment, service


def test_kubernetes_client_matches_the_schema_version_we_validate_against():
    import kubernetes

    assert kubernetes.__version__.split(".")[0] == K8S_VERSION.split(".")[1]


@pytest.mark.parametrize("which", [0, 1], ids=["deployment", "service"])
def test_manifests_are_schema_valid(rendered, which: int):
    assert kubernetes_validate.validate(rendered[which], K8S_VERSION, strict=True) == K8S_VERSION


def test_the_validator_rejects_a_broken_manifest(rendered):
    """Control: the schema check above can fail."""
    bad = copy.deepcopy(rendered[0])
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    typo = copy.deepcopy(rendered[0])
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSION, strict=True)


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_version_is_pinned_in_the_pod(rendered):
    deployment, _ = rendered
    c = _container(deployment)
    env = {e["name"]: e for e in c["env"]}
    assert env["DSLC_SERVING_MODEL"]["value"] == "models:/flights_late/7"
    assert env["DSLC_MODEL_NAME"]["value"] == MODEL
    assert c["args"][:2] == ["--model", "$(DSLC_SERVING_MODEL)"]  # expanded by the kubelet
    assert c["image"] == "registry.example/dslc:0.1.0"
    assert deployment["spec"]["template"]["metadata"]["labels"]["dslc.io/model-version"] == "7"
    assert k8s.pinned_version(deployment["spec"]["template"]) == "7"
    assert deployment["metadata"]["namespace"] == NS


def test_probes_and_ports(rendered):
    deployment, service = rendered
    c = _container(deployment)
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in c["ports"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # The selector is immutable: it must not carry the version.
    assert "dslc.io/model-version" not in deployment["spec"]["selector"]["matchLabels"]


def test_non_root_resources_and_secrets(rendered):
    deployment, _ = rendered
    pod = deployment["spec"]["template"]["spec"]
    c = _container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 50000
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True and sc["capabilities"]["drop"] == ["ALL"]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]  # writable scratch only
    for kind in ("requests", "limits"):
        assert set(c["resources"][kind]) == {"cpu", "memory"}
    token = {e["name"]: e for e in c["env"]}["DSLC_SERVING_ADMIN_TOKEN"]
    assert token == {
        "name": "DSLC_SERVING_ADMIN_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "dslc-serving", "key": "admin-token"}},
    }
    assert pod["automountServiceAccountToken"] is False
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_rendering_is_typed_and_refuses_missing_values():
    d, _ = k8s.manifests(cfg(replicas=3, port=9000, progress_deadline=120), MODEL, "2")
    assert d["spec"]["replicas"] == 3 and d["spec"]["progressDeadlineSeconds"] == 120
    assert _container(d)["ports"][0]["containerPort"] == 9000
    assert _container(d)["args"][-1] == "9000"
    with pytest.raises(deploy.DeployError, match=r"needs values for \[.*'image'"):
        k8s.render("deployment.yaml", {"name": "x"})


def test_templates_ship_with_the_package():
    root = Path(__file__).resolve().parents[3]
    pyproject = (root / "pyproject.toml").read_text()
    assert '"deploy/k8s/*.yaml"' in pyproject
    assert (root / "include/dslc/deploy/k8s/deployment.yaml").exists()


# -- a fake API server under the real client ---------------------------------------------------


class _Response:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.reason = {200: "OK", 201: "Created", 403: "Forbidden", 404: "Not Found"}.get(
            status, "Error"
        )
        self.data = json.dumps(body).encode()
        self.headers = {"content-type": "application/json"}

    def getheaders(self) -> dict[str, str]:
        return self.headers

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    t = copy.deepcopy(template)
    t.get("metadata", {}).get("labels", {}).pop(k8s.TEMPLATE_HASH, None)
    return t


class FakeCluster:
    """Enough of the API server and the deployment controller for one Deployment + Service.

    ``behaviour[version]`` says how a rollout of a template pinning that version goes:
    ``ok`` (completes over a few polls), ``deadline`` (ProgressDeadlineExceeded), ``stuck``
    (never completes). Installed as the client's urllib3 pool manager.
    """

    def __init__(self, behaviour: dict[str, str] | None = None) -> None:
        self.behaviour = behaviour or {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.replicasets: dict[str, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []
        self.forbid: set[str] = set()  # "METHOD kind" answered 403
        self.polls = 0

    # urllib3.PoolManager.request
    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kw: Any):
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        query.update(dict(kw.get("fields") or {}))
        payload = json.loads(body) if body else None
        ctype = (headers or {}).get("Content-Type")
        self.calls.append(
            {"method": method, "path": parts.path, "query": query, "type": ctype, "body": payload}
        )
        segs = parts.path.strip("/").split("/")
        kind, name = (segs[-2], segs[-1]) if segs[-1] not in ("replicasets",) else (segs[-1], None)
        if f"{method} {kind}" in self.forbid:
            return _Response(403, {"kind": "Status", "message": f"{kind} is forbidden"})
        if kind == "services" and method == "PATCH":
            assert name is not None
            self.services[name] = payload
            return _Response(200, payload)
        if kind == "replicasets":
            return self._list_rs(query.get("labelSelector", ""))
        if kind == "deployments":
            assert name is not None
            if method == "GET":
                return self._get(name)
            if method == "PATCH":
                return self._patch(name, ctype, payload)
        return _Response(404, {"kind": "Status", "message": "not found"})

    def _get(self, name: str) -> _Response:
        dep = self.deployments.get(name)
        if dep is None:
            return _Response(404, {"kind": "Status", "reason": "NotFound"})
        self._progress(dep)
        return _Response(200, dep)

    def _patch(self, name: str, ctype: str, body: Any) -> _Response:
        dep = self.deployments.get(name)
        if ctype == "application/apply-patch+yaml":
            if dep is None:
                dep = copy.deepcopy(body)
                dep["metadata"].update(uid="uid-1", generation=0, annotations={})
                dep["status"] = {}
                self.deployments[name] = dep
            else:
                dep["metadata"]["labels"] = body["metadata"]["labels"]
                dep["spec"] = copy.deepcopy(body["spec"])
        elif ctype == "application/json-patch+json":
            assert dep is not None
            for op in body:
                assert op["op"] == "replace"
                if op["path"] == "/spec/template":
                    dep["spec"]["template"] = op["value"]
                else:
                    key = op["path"].split("/")[-1].replace("~1", "/").replace("~0", "~")
                    dep["metadata"]["labels"][key] = op["value"]
        elif ctype == "application/strategic-merge-patch+json":
            assert dep is not None
            dep["spec"]["replicas"] = body["spec"]["replicas"]
        else:
            raise AssertionError(f"unexpected patch type {ctype}")
        dep["metadata"]["generation"] += 1
        self._reconcile(dep)
        return _Response(200, dep)

    def _reconcile(self, dep: dict[str, Any]) -> None:
        """The controller: the template's ReplicaSet gets the next revision (reused if known)."""
        template = _without_hash(dep["spec"]["template"])
        revisions = [int(rs["metadata"]["annotations"][k8s.REVISION]) for rs in self.rs_list()]
        current = next(
            (rs for rs in self.rs_list() if _without_hash(rs["spec"]["template"]) == template),
            None,
        )
        rev = str(max(revisions, default=0) + 1)
        if current is None:
            h = f"h{len(self.replicasets) + 1}"
            t = copy.deepcopy(template)
            t["metadata"]["labels"][k8s.TEMPLATE_HASH] = h
            current = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{dep['metadata']['name']}-{h}",
                    "namespace": NS,
                    "labels": dict(t["metadata"]["labels"]),
                    "annotations": {},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": dep["metadata"]["name"],
                            "uid": dep["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
                "spec": {"selector": dep["spec"]["selector"], "template": t},
            }
            self.replicasets[current["metadata"]["name"]] = current
        if current["metadata"]["annotations"].get(k8s.REVISION) != str(max(revisions, default=0)):
            current["metadata"]["annotations"][k8s.REVISION] = rev
        dep["metadata"]["annotations"][k8s.REVISION] = current["metadata"]["annotations"][
            k8s.REVISION
        ]
        dep["status"]["conditions"] = []
        self.polls = 0

    def rs_list(self) -> list[dict[str, Any]]:
        return list(self.replicasets.values())

    def _list_rs(self, selector: str) -> _Response:
        want = dict(kv.split("=", 1) for kv in selector.split(",") if kv)
        items = [rs for rs in self.rs_list() if want.items() <= rs["metadata"]["labels"].items()]
        return _Response(200, {"apiVersion": "apps/v1", "kind": "ReplicaSetList", "items": items})

    def _progress(self, dep: dict[str, Any]) -> None:
        """One controller step per read, as the behaviour of the pinned version says."""
        status, spec = dep["status"], dep["spec"]
        want = spec["replicas"]
        how = self.behaviour.get(k8s.pinned_version(spec["template"]) or "", "ok")
        step, self.polls = self.polls, self.polls + 1
        if step == 0:  # the controller has not seen the new generation yet
            status["observedGeneration"] = dep["metadata"]["generation"] - 1
            return
        status["observedGeneration"] = dep["metadata"]["generation"]
        if want == 0:
            status.update(replicas=0, updatedReplicas=0, availableReplicas=0)
        elif how == "ok":
            # A rolling update (maxSurge 1): new pods come up, then the old one goes, then
            # the last new pod turns available.
            status.update(
                {
                    1: {"updatedReplicas": 1, "replicas": want + 1, "availableReplicas": want},
                    2: {"updatedReplicas": want, "replicas": want + 1, "availableReplicas": want},
                    3: {"updatedReplicas": want, "replicas": want, "availableReplicas": want - 1},
                }.get(step, {"updatedReplicas": want, "replicas": want, "availableReplicas": want})
            )
        elif how == "stuck":
            status.update(replicas=want + 1, updatedReplicas=1, availableReplicas=want)
        elif how == "deadline":
            status.update(replicas=want + 1, updatedReplicas=1, availableReplicas=want)
            if step >= 2:
                status["conditions"] = [
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": f'ReplicaSet "{dep["metadata"]["name"]}" has timed out '
                        "progressing.",
                    }
                ]

    # what tests look at
    def pinned(self, name: str = "dslc-serving") -> str | None:
        return k8s.pinned_version(self.deployments[name]["spec"]["template"])

    def writes(self) -> list[tuple[str, str, str | None]]:
        return [(c["method"], c["path"], c["type"]) for c in self.calls if c["method"] != "GET"]


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def target_for(cluster: FakeCluster, timeout: float = 60.0) -> k8s.KubernetesTarget:
    conf = client.Configuration()
    conf.host = "https://k8s.test"
    api = client.ApiClient(conf)
    api.rest_client.pool_manager = cluster
    clock = FakeClock()
    return k8s.KubernetesTarget(
        api,
        cfg(replicas=2),
        timeout=timeout,
        service_url="http://dslc-serving.dslc:8000",
        poll_interval=2.0,
        sleep=clock.sleep,
        clock=clock,
    )


DEP_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/dslc-serving"
SVC_PATH = f"/api/v1/namespaces/{NS}/services/dslc-serving"


def test_first_rollout_applies_service_and_deployment_then_waits():
    cluster = FakeCluster()
    target = target_for(cluster)
    assert target.current_version(MODEL) is None
    target.rollout(MODEL, "1")
    during = cluster.calls[1:]
    assert cluster.writes() == [
        ("PATCH", SVC_PATH, "application/apply-patch+yaml"),
        ("PATCH", DEP_PATH, "application/apply-patch+yaml"),
    ]
    apply = cluster.calls[2]
    assert apply["query"] == {"fieldManager": "dslc", "force": "True", "fieldValidation": "Strict"}
    assert kubernetes_validate.validate(apply["body"], K8S_VERSION, strict=True)
    assert cluster.pinned() == "1" and target.current_version(MODEL) == "1"
    # It polled until observed generation, updated, old-replicas-gone and available all held.
    status = cluster.deployments["dslc-serving"]["status"]
    assert status["availableReplicas"] == status["updatedReplicas"] == status["replicas"] == 2
    # One read per controller step: unobserved, 1/2 updated, old pod terminating,
    # 1/2 available, done.
    gets = [c for c in during if c["method"] == "GET"]
    assert len(gets) == 5 and {c["path"] for c in gets} == {DEP_PATH}
    assert target.endpoint == "http://dslc-serving.dslc:8000"


def test_rollout_deadline_exceeded_fails_with_the_condition():
    cluster = FakeCluster({"2": "deadline"})
    target = target_for(cluster)
    target.rollout(MODEL, "1")
    with pytest.raises(deploy.DeployError) as err:
        target.rollout(MODEL, "2")
    assert "rollout failed: deployment dslc-serving exceeded its progress deadline" in str(
        err.value
    )
    assert "has timed out progressing" in str(err.value)


def test_rollback_reapplies_the_previous_replicaset_template_like_rollout_undo():
    cluster = FakeCluster({"2": "deadline"})
    target = target_for(cluster)
    target.rollout(MODEL, "1")
    v1_template = _without_hash(cluster.rs_list()[0]["spec"]["template"])
    with pytest.raises(deploy.DeployError):
        target.rollout(MODEL, "2")
    assert cluster.deployments["dslc-serving"]["metadata"]["annotations"][k8s.REVISION] == "2"
    note = target.rollback(MODEL, "2", "1")
    assert note == "deployment/dslc-serving rolled back to revision 1 (version 1)"
    undo = [c for c in cluster.calls if c["type"] == "application/json-patch+json"]
    (call,) = undo
    assert call["body"][0] == {"op": "replace", "path": "/spec/template", "value": v1_template}
    assert k8s.TEMPLATE_HASH not in call["body"][0]["value"]["metadata"]["labels"]
    assert call["body"][1]["path"] == "/metadata/labels/dslc.io~1model-version"
    assert cluster.pinned() == "1"
    # Like the real controller, the old ReplicaSet is reused and becomes revision 3.
    assert cluster.deployments["dslc-serving"]["metadata"]["annotations"][k8s.REVISION] == "3"
    assert len(cluster.replicasets) == 2
    list_call = next(c for c in cluster.calls if c["path"].endswith("/replicasets"))
    assert list_call["query"]["labelSelector"] == (
        "app.kubernetes.io/instance=dslc-serving,app.kubernetes.io/name=dslc-serving"
    )


def test_stuck_rollout_times_out():
    cluster = FakeCluster({"2": "stuck"})
    target = target_for(cluster, timeout=30)
    target.rollout(MODEL, "1")
    with pytest.raises(deploy.DeployError) as err:
        target.rollout(MODEL, "2")
    assert "not complete within 30 s: 1 of 2 new replicas have been updated" in str(err.value)


def test_rollback_ignores_replicasets_of_other_owners():
    cluster = FakeCluster({"2": "deadline"})
    target = target_for(cluster)
    target.rollout(MODEL, "1")
    with pytest.raises(deploy.DeployError):
        target.rollout(MODEL, "2")
    # An orphan with matching labels and a lower revision, owned by someone else.
    stranger = copy.deepcopy(cluster.rs_list()[0])
    stranger["metadata"]["name"] = "stranger"
    stranger["metadata"]["ownerReferences"][0]["uid"] = "uid-other"
    stranger["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "models:/x/99"
    # Listed first, so only the owner check keeps it out.
    cluster.replicasets = {"stranger": stranger, **cluster.replicasets}
    assert "(version 1)" in target.rollback(MODEL, "2", "1")


def test_first_deploy_that_fails_is_scaled_to_zero():
    cluster = FakeCluster({"1": "deadline"})
    target = target_for(cluster)
    with pytest.raises(deploy.DeployError):
        target.rollout(MODEL, "1")
    note = target.rollback(MODEL, "1", None)
    assert "has no earlier revision to go back to: scaled it to 0 replicas" in note
    assert cluster.deployments["dslc-serving"]["spec"]["replicas"] == 0
    assert cluster.writes()[-1] == ("PATCH", DEP_PATH, "application/strategic-merge-patch+json")


def test_a_refused_apply_leaves_nothing_to_roll_back():
    cluster = FakeCluster()
    target = target_for(cluster)
    target.rollout(MODEL, "1")
    cluster.forbid.add("PATCH deployments")
    with pytest.raises(deploy.DeployError) as err:
        target.rollout(MODEL, "2")
    assert "apply deployment/dslc-serving in dslc answered 403 Forbidden" in str(err.value)
    assert "lacks the RBAC permission" in str(err.value)
    assert target.rollback(MODEL, "2", "1") == (
        "deployment/dslc-serving still pins version 1: nothing to roll back"
    )


# -- deploy() end to end on the fake cluster ----------------------------------------------------


@pytest.fixture
def world(tmp_path: Path, monkeypatch):
    """v1 serving in the cluster, v2 just promoted; the smoke test is scripted."""
    fake = FakeMlflow(["1", "2"], {"champion": "1"})
    monkeypatch.setattr(registry, "client", lambda uri=None: fake)
    state: dict[str, Any] = {"raise": None, "endpoints": []}

    def fake_smoke(model_name, version, **kw):
        state["endpoints"].append(kw["endpoint"])
        if state["raise"]:
            raise state["raise"]
        return {**PASSED, "version_seen": version}

    monkeypatch.setattr(smoke, "smoke_test", fake_smoke)
    lake = Lake(f"file://{tmp_path / 'lake'}")
    return fake, lake, state


def _deploy(target, lake, version: str):
    return deploy.deploy(MODEL, version, target=target, lake=lake, actor="test", reason="r")


def _promote(fake: FakeMlflow, version: str) -> None:
    fake.aliases["previous_champion"] = fake.aliases["champion"]
    fake.aliases["champion"] = version


def test_deploy_on_kubernetes_records_and_smoke_tests_through_the_service(world):
    fake, lake, state = world
    cluster = FakeCluster()
    target = target_for(cluster)
    _deploy(target, lake, "1")
    _promote(fake, "2")
    record = _deploy(target, lake, "2")
    assert record["status"] == "deployed" and record["target"] == "kubernetes"
    assert record["serving_before"] == "1" and cluster.pinned() == "2"
    assert state["endpoints"] == ["http://dslc-serving.dslc:8000"] * 2
    assert [r["version"] for r in records.list_records(lake, MODEL)] == ["1", "2"]


@pytest.mark.parametrize(
    ("behaviour", "smoke_fails", "stage", "why"),
    [
        ({"2": "deadline"}, False, "rollout", "exceeded its progress deadline"),
        ({"2": "stuck"}, False, "rollout", "not complete within 60 s"),
        ({}, True, "smoke test", "smoke test: 3 of 200 rows differ"),
    ],
    ids=["progress-deadline", "timeout", "smoke-failure"],
)
def test_failed_kubernetes_deploy_rolls_back_revision_and_alias(
    world, behaviour, smoke_fails, stage, why
):
    fake, lake, state = world
    cluster = FakeCluster(behaviour)
    target = target_for(cluster)
    _deploy(target, lake, "1")
    _promote(fake, "2")
    if smoke_fails:
        state["raise"] = smoke.SmokeTestError("smoke test: 3 of 200 rows differ")
    with pytest.raises(deploy.DeployError) as err:
        _deploy(target, lake, "2")
    message = str(err.value)
    assert f"failed at the {stage}: " in message and why in message
    assert "service: deployment/dslc-serving rolled back to revision 1 (version 1)" in message
    assert "alias: champion -> version 1" in message
    assert cluster.pinned() == "1" and fake.aliases["champion"] == "1"
    last = records.list_records(lake, MODEL)[-1]
    assert last["status"] == "rolled_back" and last["stage"] == stage
    assert json.loads(fake.versions["2"].tags[records.TAG])["status"] == "rolled_back"


# -- the Airflow side: the target from the cncf-kubernetes provider's hook ---------------------


def test_airflow_glue_builds_the_kubernetes_target_from_the_connection(monkeypatch):
    """KubernetesHook(conn_id=DSLC_K8S_CONN_ID).api_client configures the real client."""
    from dslc.settings import get_settings
    from dslc_airflow.deploy import build_target

    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "t",
        "clusters": [{"name": "c", "cluster": {"server": "https://k8s.example:6443"}}],
        "users": [{"name": "u", "user": {"token": "abc"}}],
        "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}],
    }
    conn = {"conn_type": "kubernetes", "extra": {"kube_config": json.dumps(kubeconfig)}}
    monkeypatch.setenv("AIRFLOW_CONN_K8S_TEST", json.dumps(conn))
    monkeypatch.setenv("DSLC_K8S_CONN_ID", "k8s_test")
    monkeypatch.setenv("DSLC_K8S_NAMESPACE", "ml")
    monkeypatch.setenv("DSLC_K8S_IMAGE", "registry.example/dslc:1.2")
    monkeypatch.delenv("DSLC_K8S_SERVICE_URL", raising=False)
    get_settings.cache_clear()
    target = build_target("kubernetes")
    assert isinstance(target, k8s.KubernetesTarget)
    assert target.api_client.configuration.host == "https://k8s.example:6443"
    assert target.cfg.namespace == "ml" and target.cfg.image == "registry.example/dslc:1.2"
    assert target.endpoint == "http://dslc-serving.ml.svc.cluster.local:8000"

    monkeypatch.setenv("DSLC_SERVING_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DSLC_SERVING_ADMIN_TOKEN", "t0ken")
    get_settings.cache_clear()
    local = build_target("local")
    assert local.name == "local" and local.endpoint == "http://127.0.0.1:9"
