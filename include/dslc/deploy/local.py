"""The local target: the running ``dslc.serving`` process loads a version through its admin API.

``POST /admin/load`` (bearer token) starts a background load that self-tests the model and
swaps it in atomically; a failed load leaves the old model serving. The target waits until
``GET /ready`` reports the version, or ``GET /admin/status`` reports that load as failed, or
the timeout passes. Rolling back is loading the previous version the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dslc.deploy.target import DeployError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)


class LocalTarget:
    """Deploy to the serving process at ``base_url`` (``DSLC_SERVING_URL``)."""

    name = "local"

    def __init__(
        self,
        base_url: str,
        admin_token: str | None,
        *,
        timeout: float,
        poll_interval: float = 0.25,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._token = admin_token
        self._http = http or httpx.Client(timeout=30.0)
        self._sleep = sleep
        self._clock = clock

    @property
    def endpoint(self) -> str:
        return self.base_url

    def _request(self, method: str, path: str, *, admin: bool = False, **kw: Any) -> httpx.Response:
        import httpx

        headers = {}
        if admin:
            if not self._token:
                raise DeployError(
                    "no serving admin token: set DSLC_SERVING_ADMIN_TOKEN to the token the "
                    f"service at {self.base_url} was started with"
                )
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            resp = self._http.request(method, f"{self.base_url}{path}", headers=headers, **kw)
        except httpx.HTTPError as e:
            raise DeployError(
                f"the serving service at {self.base_url} is not reachable ({type(e).__name__}: "
                f"{e}): start it (`dslc up` or `dslc serve`) or set DSLC_SERVING_URL"
            ) from e
        if admin and resp.status_code in (401, 403):
            raise DeployError(
                f"the serving admin API at {self.base_url} refused the token "
                f"({resp.status_code}): set DSLC_SERVING_ADMIN_TOKEN to the service's token"
            )
        return resp

    def ready(self) -> dict[str, Any] | None:
        """``GET /ready``: what is loaded, or None when nothing is."""
        resp = self._request("GET", "/ready")
        if resp.status_code == 503:
            return None
        if resp.status_code != 200:
            raise DeployError(f"GET {self.base_url}/ready answered {resp.status_code}: {resp.text}")
        body: dict[str, Any] = resp.json()
        return body

    def status(self) -> dict[str, Any]:
        """``GET /admin/status``: what is served and how the last load went."""
        resp = self._request("GET", "/admin/status", admin=True)
        if resp.status_code != 200:
            raise DeployError(
                f"GET {self.base_url}/admin/status answered {resp.status_code}: {resp.text}"
            )
        body: dict[str, Any] = resp.json()
        return body

    def current_version(self, model_name: str) -> str | None:
        ready = self.ready()
        if ready is None:
            return None
        if ready.get("model") != model_name:
            raise DeployError(
                f"the service at {self.base_url} serves model {ready.get('model')!r}, not "
                f"{model_name!r}: point DSLC_SERVING_URL at the service of {model_name!r}"
            )
        return str(ready["version"])

    def _load(self, model_name: str, version: str) -> bool:
        """``POST /admin/load``; True if a load started, False if it already serves it."""
        uri = f"models:/{model_name}/{version}"
        resp = self._request("POST", "/admin/load", admin=True, json={"uri": uri})
        if resp.status_code == 202:
            return True
        if resp.status_code == 200:
            return False
        hint = {
            404: f" (is {uri} registered in the MLflow the service uses?)",
            409: " (another load is running; wait for it and retry)",
        }.get(resp.status_code, "")
        raise DeployError(
            f"POST {self.base_url}/admin/load {uri} answered {resp.status_code}{hint}: "
            f"{resp.text[:500]}"
        )

    def _last_load(self) -> dict[str, Any]:
        last: dict[str, Any] = self.status().get("last_load") or {}
        return last

    def _wait(self, model_name: str, version: str) -> None:
        """Until /ready reports ``version`` and the load is done, the load fails, or timeout."""
        deadline = self._clock() + self.timeout
        while True:
            last = self._last_load()
            state = last.get("state")
            if str(last.get("version")) == version and state == "failed":
                raise DeployError(
                    f"the service failed to load {model_name} version {version}: "
                    f"{last.get('error') or 'no error given'} (it keeps serving what it served)"
                )
            ready = self.ready()
            if ready and str(ready.get("version")) == version and state != "loading":
                return
            if self._clock() >= deadline:
                raise DeployError(
                    f"the service did not serve {model_name} version {version} within "
                    f"{self.timeout:g} s (serving: {ready and ready.get('version')}, last load: "
                    f"{last or 'unknown'}); raise DSLC_DEPLOY_TIMEOUT_SECONDS if loading is slow"
                )
            self._sleep(self.poll_interval)

    def settle(self) -> None:
        """Wait (within the timeout) for a running load to finish, whatever its outcome."""
        deadline = self._clock() + self.timeout
        while self._last_load().get("state") == "loading":
            if self._clock() >= deadline:
                raise DeployError(
                    f"a load on the service at {self.base_url} is still running after "
                    f"{self.timeout:g} s; check GET /admin/status and the service's log"
                )
            self._sleep(self.poll_interval)

    def rollout(self, model_name: str, version: str) -> None:
        if not self._load(model_name, version):
            log.info("%s already serves %s version %s", self.base_url, model_name, version)
            return
        self._wait(model_name, version)
        log.info("%s serves %s version %s", self.base_url, model_name, version)

    def rollback(self, model_name: str, failed: str, previous: str | None) -> str:
        # A load of the failed version may still be running (a timed-out rollout): let it end,
        # then see what is served, so it cannot swap in after the rollback.
        self.settle()
        now = self.current_version(model_name)
        if previous is None:
            if now == failed:
                return (
                    f"the service still serves the failed version {failed}: there is no "
                    "previous version to go back to; deploy another version or stop it"
                )
            return f"the service serves version {now} (the failed version never took over)"
        if now == previous:
            return f"the service still serves version {previous} (the new version never took over)"
        self._load(model_name, previous)
        self._wait(model_name, previous)
        return f"the service reloaded version {previous}"
