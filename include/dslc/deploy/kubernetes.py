"""The Kubernetes target: a Deployment + Service of the serving image, version pinned in the pod.

The manifests are templates kept in ``include/dslc/k8s/`` (:func:`render`). A deploy applies
both (server-side apply, field manager ``dslc``, strict field validation), then waits for the
rollout the way ``kubectl rollout status`` does (observed generation, updated / available
replicas, the ``ProgressDeadlineExceeded`` condition) within the deploy timeout. Rolling back
is what ``kubectl rollout undo`` does: find the Deployment's ReplicaSets (by owner and the
``deployment.kubernetes.io/revision`` annotation) and put the previous one's pod template back.

Everything goes through ``kubernetes.client`` (``AppsV1Api``, ``CoreV1Api``) on an
``ApiClient`` the caller builds (in Airflow, from the cncf-kubernetes provider's hook).
"""

from __future__ import annotations

import contextlib
import logging
import re
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from dslc.deploy.target import DeployError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, V1Deployment

log = logging.getLogger(__name__)

FIELD_MANAGER = "dslc"
REVISION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH = "pod-template-hash"
MODEL_ENV = "DSLC_SERVING_MODEL"
VERSION_LABEL = "dslc.io/model-version"
_APPLY = "application/apply-patch+yaml"
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class ManifestConfig:
    """What the manifests are rendered with (besides the model and version)."""

    namespace: str
    image: str
    mlflow_uri: str
    lake_url: str
    name: str = "dslc-serving"
    replicas: int = 2
    port: int = 8000
    secret_name: str = "dslc-serving"  # noqa: S105 - the Secret's name, not a secret
    progress_deadline: int = 300
    cpu_request: str = "250m"
    memory_request: str = "512Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"


def _substitute(node: Any, values: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, values) for v in node]
    if isinstance(node, str):
        whole = _PLACEHOLDER.fullmatch(node)
        if whole:
            return values[whole.group(1)]  # typed: an int stays an int
        return string.Template(node).substitute(values) if "${" in node else node
    return node


def render(template: str, values: dict[str, Any]) -> dict[str, Any]:
    """Load ``include/dslc/k8s/<template>`` and fill its ``${...}`` placeholders."""
    import yaml

    text = resources.files("dslc.deploy").joinpath("k8s", template).read_text(encoding="utf-8")
    loaded = yaml.safe_load(text)
    missing = {m for m in _PLACEHOLDER.findall(text) if m not in values}
    if missing:
        raise DeployError(f"manifest template {template} needs values for {sorted(missing)}")
    rendered: dict[str, Any] = _substitute(loaded, values)
    return rendered


def _label(value: str) -> str:
    """A valid label value (63 chars of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63]
    return cleaned.strip("-_.") or "none"


def manifests(cfg: ManifestConfig, model_name: str, version: str) -> tuple[dict[str, Any], ...]:
    """The Deployment and the Service for ``model_name`` version ``version``."""
    values = {
        **asdict(cfg),
        "port_str": str(cfg.port),
        "model_name": model_name,
        "model_label": _label(model_name),
        "version": str(version),
        "model_uri": f"models:/{model_name}/{version}",
    }
    return render("deployment.yaml", values), render("service.yaml", values)


def pinned_version(template: dict[str, Any]) -> str | None:
    """The model version a pod template (API dict form) pins in ``DSLC_SERVING_MODEL``."""
    for container in (template.get("spec") or {}).get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == MODEL_ENV and env.get("value"):
                return str(env["value"]).rsplit("/", 1)[-1]
    return None


def rollout_state(dep: V1Deployment) -> tuple[str, str]:
    """("done" | "progressing" | "failed", why), as ``kubectl rollout status`` decides."""
    name, status = dep.metadata.name, dep.status
    if (dep.metadata.generation or 0) > (status.observed_generation or 0):
        return "progressing", f"waiting for deployment {name}'s spec update to be observed"
    for cond in status.conditions or []:
        if cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded":
            return "failed", f"deployment {name} exceeded its progress deadline: {cond.message}"
    want = dep.spec.replicas if dep.spec.replicas is not None else 1
    updated, total = status.updated_replicas or 0, status.replicas or 0
    available = status.available_replicas or 0
    if updated < want:
        return "progressing", f"{updated} of {want} new replicas have been updated"
    if total > updated:
        return "progressing", f"{total - updated} old replicas are pending termination"
    if available < updated:
        return "progressing", f"{available} of {updated} updated replicas are available"
    return "done", f"deployment {name} successfully rolled out"


@contextlib.contextmanager
def _api(what: str) -> Iterator[None]:
    """Turn the Kubernetes API's errors into a DeployError that says what was being done."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as e:
        hint = {
            401: ": the connection's credentials were refused; check DSLC_K8S_CONN_ID",
            403: ": the connection's identity lacks the RBAC permission for it",
        }.get(e.status or 0, "")
        raise DeployError(
            f"Kubernetes API: {what} answered {e.status} {e.reason}{hint}: {str(e.body)[:500]}"
        ) from e
    except HTTPError as e:
        raise DeployError(f"Kubernetes API unreachable while trying to {what}: {e}") from e


class KubernetesTarget:
    """Deploy to a Deployment + Service in ``cfg.namespace`` through ``api_client``."""

    name = "kubernetes"

    def __init__(
        self,
        api_client: ApiClient,
        cfg: ManifestConfig,
        *,
        timeout: float,
        service_url: str | None = None,
        poll_interval: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.cfg = cfg
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._service_url = service_url
        self._sleep = sleep
        self._clock = clock

    @property
    def endpoint(self) -> str:
        cfg = self.cfg
        return (
            self._service_url or f"http://{cfg.name}.{cfg.namespace}.svc.cluster.local:{cfg.port}"
        ).rstrip("/")

    def _read(self) -> V1Deployment | None:
        from kubernetes.client.exceptions import ApiException

        with _api(f"read deployment/{self.cfg.name} in {self.cfg.namespace}"):
            try:
                return self.apps.read_namespaced_deployment(self.cfg.name, self.cfg.namespace)
            except ApiException as e:
                if e.status == 404:
                    return None
                raise

    def _template(self, dep: V1Deployment) -> dict[str, Any]:
        out: dict[str, Any] = self.api_client.sanitize_for_serialization(dep.spec.template)
        return out

    def current_version(self, model_name: str) -> str | None:
        dep = self._read()
        return None if dep is None else pinned_version(self._template(dep))

    def apply(self, model_name: str, version: str) -> None:
        """Server-side apply the Service and the Deployment pinned to ``version``."""
        deployment, service = manifests(self.cfg, model_name, version)
        ns, name = self.cfg.namespace, self.cfg.name
        opts = {"field_manager": FIELD_MANAGER, "force": True, "field_validation": "Strict"}
        with _api(f"apply service/{name} in {ns}"):
            self.core.patch_namespaced_service(name, ns, service, _content_type=_APPLY, **opts)
        with _api(f"apply deployment/{name} in {ns}"):
            self.apps.patch_namespaced_deployment(
                name, ns, deployment, _content_type=_APPLY, **opts
            )

    def wait(self) -> V1Deployment:
        """Until the rollout is complete; DeployError on a failed or timed-out rollout."""
        deadline = self._clock() + self.timeout
        while True:
            dep = self._read()
            if dep is None:
                raise DeployError(f"deployment/{self.cfg.name} vanished during the rollout")
            state, why = rollout_state(dep)
            if state == "done":
                return dep
            if state == "failed":
                raise DeployError(f"rollout failed: {why}")
            if self._clock() >= deadline:
                raise DeployError(
                    f"rollout of deployment/{self.cfg.name} not complete within "
                    f"{self.timeout:g} s: {why}"
                )
            self._sleep(self.poll_interval)

    def settle(self) -> None:
        """Nothing to wait for: :meth:`current_version` reads the pinned version, which is final
        once applied (a rollout still in progress is superseded by the next apply or patch)."""

    def rollout(self, model_name: str, version: str) -> None:
        self.apply(model_name, version)
        self.wait()
        log.info("deployment/%s rolled out %s version %s", self.cfg.name, model_name, version)

    def _previous_replica_set(self, dep: V1Deployment) -> tuple[int, Any] | None:
        """The Deployment's ReplicaSet with the highest revision below the current one."""
        current = int((dep.metadata.annotations or {}).get(REVISION, "0"))
        selector = ",".join(f"{k}={v}" for k, v in sorted(dep.spec.selector.match_labels.items()))
        with _api(f"list the replicasets of deployment/{self.cfg.name}"):
            rss = self.apps.list_namespaced_replica_set(self.cfg.namespace, label_selector=selector)
        best: tuple[int, Any] | None = None
        for rs in rss.items:
            owners = rs.metadata.owner_references or []
            if not any(o.uid == dep.metadata.uid and o.controller for o in owners):
                continue
            rev = int((rs.metadata.annotations or {}).get(REVISION, "0"))
            if rev < current and (best is None or rev > best[0]):
                best = (rev, rs)
        return best

    def rollback(self, model_name: str, failed: str, previous: str | None) -> str:
        ns, name = self.cfg.namespace, self.cfg.name
        dep = self._read()
        if dep is None:
            return f"no deployment/{name} in {ns}: nothing to roll back"
        pinned = pinned_version(self._template(dep))
        if pinned != failed:
            return f"deployment/{name} still pins version {pinned}: nothing to roll back"
        found = self._previous_replica_set(dep)
        if found is None:
            with _api(f"scale deployment/{name} to 0"):
                self.apps.patch_namespaced_deployment(name, ns, {"spec": {"replicas": 0}})
            return (
                f"deployment/{name} has no earlier revision to go back to: scaled it to 0 "
                "replicas so the failed version serves nothing"
            )
        revision, rs = found
        template: dict[str, Any] = self.api_client.sanitize_for_serialization(rs.spec.template)
        (template.get("metadata") or {}).get("labels", {}).pop(TEMPLATE_HASH, None)
        restored = pinned_version(template)
        patch: list[dict[str, Any]] = [
            {"op": "replace", "path": "/spec/template", "value": template}
        ]
        if restored is not None and VERSION_LABEL in (dep.metadata.labels or {}):
            path = "/metadata/labels/" + VERSION_LABEL.replace("~", "~0").replace("/", "~1")
            patch.append({"op": "replace", "path": path, "value": restored})
        with _api(f"roll deployment/{name} back to revision {revision}"):
            self.apps.patch_namespaced_deployment(name, ns, patch)
        self.wait()
        note = f"deployment/{name} rolled back to revision {revision} (version {restored})"
        if previous is not None and restored != previous:
            note += f"; note: that revision pins version {restored}, not {previous}"
        return note
