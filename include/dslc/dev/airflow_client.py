"""A small typed client for Airflow 3's REST API, and the date helpers its requests need.

Facts about Airflow 3.3 this relies on (checked in its source):

* ``POST /auth/token`` with JSON ``{"username", "password"}`` answers 201 ``{"access_token"}``
  (SimpleAuthManager); every ``/api/v2`` route but ``/monitor/health`` and ``/version`` needs
  ``Authorization: Bearer <token>``.
* ``POST /api/v2/backfills`` takes ``from_date``/``to_date`` and creates one run per logical date
  with ``from_date <= logical_date <= to_date``: ``to_date`` is *inclusive*. For a daily DAG the
  logical dates are midnights (UTC here), so ``--end 2013-01-03`` is sent as 2013-01-03T00:00Z.
* ``POST /api/v2/backfills/dry_run`` lists the logical dates a backfill would create (honouring
  ``reprocess_behavior``); a backfill with nothing to create is refused with 422.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dslc.dev.console import CliError
from dslc.settings import Settings, get_settings

if TYPE_CHECKING:
    import httpx

REPROCESS_BEHAVIORS = ("none", "failed", "completed")
BACKFILL_CREATE_ATTEMPTS = 8
BACKFILL_RETRY_SECONDS = 2.0


# Methods whose repeat does what one call does; they are retried when Airflow answers late.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})
IDEMPOTENT_TRIES = 3


class AirflowApiError(CliError):
    """An error the user can act on; the CLI shows the message without a traceback."""


def logical_date(day: dt.date) -> dt.datetime:
    """Midnight UTC of ``day``: the logical date of a daily run for that day."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def backfill_window(first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """``from_date`` and ``to_date`` for the days ``first..last`` (both inclusive).

    Airflow's ``to_date`` is inclusive of the logical date, so the last day's midnight is sent.
    """
    if last < first:
        raise ValueError(f"the window is empty: {last} is before {first}")
    return logical_date(first), logical_date(last)


def iso(value: dt.datetime) -> str:
    """An ISO-8601 timestamp Airflow accepts (``Z`` for UTC)."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str) -> dt.datetime:
    """Parse Airflow's ISO timestamps (``...Z`` or ``...+00:00``) to an aware datetime."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def format_detail(body: Any) -> str:
    """Turn an Airflow/FastAPI error body (``{"detail": str | list | dict}``) into one line."""
    detail = body.get("detail", body) if isinstance(body, Mapping) else body
    if isinstance(detail, str):
        return detail
    if isinstance(detail, Sequence):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                msg = str(item.get("msg", item))
                parts.append(f"{loc}: {msg}" if loc else msg)
            else:
                parts.append(str(item))
        return "; ".join(parts)
    if isinstance(detail, Mapping):
        reason = detail.get("reason") or detail.get("message")
        return str(reason) if reason else str(dict(detail))
    return str(detail)


class AirflowClient:
    """Bearer-token client for ``/api/v2`` (token from ``POST /auth/token``, refreshed on 401)."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self._token: str | None = None
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, transport=transport, trust_env=False
        )

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> AirflowClient:
        from dslc.dev.stack import StackError, admin_password

        settings = settings or get_settings()
        try:
            password = admin_password(settings)
        except StackError as e:
            raise AirflowApiError(
                f"Airflow is not reachable at {settings.airflow_url}: run `dslc up` ({e.message})"
            ) from None
        return cls(settings.airflow_url, settings.airflow_username, password)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        # A busy api-server (one worker, sharing the machine with the tasks) can miss the
        # timeout once: a request that is safe to repeat is tried again; a POST never is.
        tries = IDEMPOTENT_TRIES if method.upper() in IDEMPOTENT_METHODS else 1
        for attempt in range(1, tries + 1):
            try:
                return self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError):
                raise AirflowApiError(
                    f"Airflow is not reachable at {self.base_url}: run `dslc up`"
                ) from None
            except httpx.TimeoutException:
                if attempt < tries:
                    continue
                after = f" ({tries} tries)" if tries > 1 else ""
                raise AirflowApiError(
                    f"Airflow at {self.base_url} did not answer {method} {path} in time"
                    f"{after}; check `dslc status`"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def login(self) -> str:
        """Get a fresh bearer token (``POST /auth/token``)."""
        resp = self._send(
            "POST", "/auth/token", json={"username": self.username, "password": self._password}
        )
        if resp.status_code in (401, 403):
            raise AirflowApiError(
                f"Airflow at {self.base_url} rejected the password of user {self.username!r} "
                f"(HTTP {resp.status_code}): set DSLC_AIRFLOW_PASSWORD, or unset it to use the "
                "password `dslc up` generated"
            )
        if resp.status_code == 404:
            raise AirflowApiError(
                f"{self.base_url}/auth/token not found: is {self.base_url} an Airflow 3 "
                "api-server with the SimpleAuthManager?"
            )
        self._check(resp, "log in")
        token = str(resp.json()["access_token"])
        self._token = token
        return token

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send an authenticated request; logs in (again) when needed. Returns any status."""
        if self._token is None:
            self.login()
        resp = self._send(
            method, path, headers={"Authorization": f"Bearer {self._token}"}, **kwargs
        )
        if resp.status_code == 401:
            self.login()
            resp = self._send(
                method, path, headers={"Authorization": f"Bearer {self._token}"}, **kwargs
            )
        return resp

    @staticmethod
    def _body(resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            return resp.text

    def _check(self, resp: httpx.Response, action: str) -> None:
        if resp.is_success:
            return
        detail = format_detail(self._body(resp)) or resp.reason_phrase
        if resp.status_code == 403:
            raise AirflowApiError(f"User {self.username!r} may not {action} (HTTP 403): {detail}")
        raise AirflowApiError(f"Airflow refused to {action} (HTTP {resp.status_code}): {detail}")

    def _json(self, method: str, path: str, action: str, **kwargs: Any) -> Any:
        resp = self.request(method, path, **kwargs)
        self._check(resp, action)
        return resp.json()

    def get_dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG, or None if Airflow does not know it (not parsed yet, or no such DAG)."""
        resp = self.request("GET", f"/api/v2/dags/{quote(dag_id, safe='')}")
        if resp.status_code == 404:
            return None
        self._check(resp, f"read DAG {dag_id}")
        data: dict[str, Any] = resp.json()
        return data

    def list_dag_ids(self) -> list[str]:
        data = self._json("GET", "/api/v2/dags", "list DAGs", params={"limit": 1000})
        return sorted(str(d["dag_id"]) for d in data.get("dags", []))

    def import_errors(self) -> list[dict[str, Any]]:
        data = self._json("GET", "/api/v2/importErrors", "list import errors")
        errors: list[dict[str, Any]] = list(data.get("import_errors", []))
        return errors

    def scheduler_healthy(self) -> bool:
        """Whether ``/api/v2/monitor/health`` reports a live scheduler (True if unknown)."""
        resp = self._send("GET", "/api/v2/monitor/health")
        if not resp.is_success:
            return True
        status = (resp.json().get("scheduler") or {}).get("status")
        return status in (None, "healthy")

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._json(
            "PATCH",
            f"/api/v2/dags/{quote(dag_id, safe='')}",
            f"{'pause' if paused else 'unpause'} DAG {dag_id}",
            json={"is_paused": paused},
        )

    def _backfill_body(
        self,
        dag_id: str,
        from_date: dt.datetime,
        to_date: dt.datetime,
        reprocess_behavior: str,
        max_active_runs: int | None,
    ) -> dict[str, Any]:
        if reprocess_behavior not in REPROCESS_BEHAVIORS:
            raise ValueError(f"reprocess_behavior must be one of {REPROCESS_BEHAVIORS}")
        body: dict[str, Any] = {
            "dag_id": dag_id,
            "from_date": iso(from_date),
            "to_date": iso(to_date),
            "reprocess_behavior": reprocess_behavior,
        }
        if max_active_runs is not None:
            body["max_active_runs"] = max_active_runs
        return body

    def dry_run_backfill(
        self,
        dag_id: str,
        from_date: dt.datetime,
        to_date: dt.datetime,
        reprocess_behavior: str = "failed",
    ) -> list[dt.datetime]:
        """The logical dates a backfill would create runs for."""
        body = self._backfill_body(dag_id, from_date, to_date, reprocess_behavior, None)
        data = self._json("POST", "/api/v2/backfills/dry_run", "plan the backfill", json=body)
        return [parse_time(b["logical_date"]) for b in data["backfills"] if b.get("logical_date")]

    def create_backfill(
        self,
        dag_id: str,
        from_date: dt.datetime,
        to_date: dt.datetime,
        reprocess_behavior: str = "failed",
        max_active_runs: int | None = None,
    ) -> dict[str, Any]:
        """``POST /api/v2/backfills``: ``to_date`` is inclusive of the logical date."""
        body = self._backfill_body(dag_id, from_date, to_date, reprocess_behavior, max_active_runs)
        action = f"create a backfill of {dag_id}"
        # On SQLite Airflow answers 503 when the scheduler holds the DB lock; the creation is
        # one transaction, rolled back on that error, so trying again is safe.
        for attempt in range(1, BACKFILL_CREATE_ATTEMPTS + 1):
            resp = self.request("POST", "/api/v2/backfills", json=body)
            if resp.status_code != 503 or attempt == BACKFILL_CREATE_ATTEMPTS:
                break
            time.sleep(BACKFILL_RETRY_SECONDS * attempt)
        self._check(resp, action)
        data: dict[str, Any] = resp.json()
        return data

    def active_backfill(self, dag_id: str) -> dict[str, Any] | None:
        """The backfill of ``dag_id`` that has not completed yet, if any."""
        data = self._json(
            "GET", "/api/v2/backfills", "list backfills", params={"dag_id": dag_id, "limit": 100}
        )
        active = [b for b in data.get("backfills", []) if not b.get("completed_at")]
        return active[-1] if active else None

    def get_backfill(self, backfill_id: int) -> dict[str, Any]:
        data: dict[str, Any] = self._json(
            "GET", f"/api/v2/backfills/{backfill_id}", f"read backfill {backfill_id}"
        )
        return data

    def close_backfill(self, backfill_id: int) -> dict[str, Any]:
        """``PUT /api/v2/backfills/{id}/cancel``: fail its queued runs, mark it completed."""
        data: dict[str, Any] = self._json(
            "PUT", f"/api/v2/backfills/{backfill_id}/cancel", f"close backfill {backfill_id}"
        )
        return data

    def list_dag_runs(
        self, dag_id: str, from_date: dt.datetime, to_date: dt.datetime
    ) -> list[dict[str, Any]]:
        """Every run of ``dag_id`` with ``from_date <= logical_date <= to_date`` (paged)."""
        runs: list[dict[str, Any]] = []
        limit = 100
        while True:
            params: dict[str, str | int] = {
                "logical_date_gte": iso(from_date),
                "logical_date_lte": iso(to_date),
                "order_by": "logical_date",
                "limit": limit,
                "offset": len(runs),
            }
            data = self._json(
                "GET",
                f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns",
                f"list the runs of {dag_id}",
                params=params,
            )
            page = list(data.get("dag_runs", []))
            runs.extend(page)
            if len(page) < limit:
                return runs

    def recent_runs(
        self, dag_id: str, states: Iterable[str] | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The latest ``limit`` runs of ``dag_id`` (optionally only in ``states``), oldest first."""
        params: dict[str, Any] = {"order_by": "-run_after", "limit": limit}
        if states is not None:
            params["state"] = list(states)
        data = self._json(
            "GET",
            f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns",
            f"list the runs of {dag_id}",
            params=params,
        )
        return list(reversed(data.get("dag_runs", [])))

    def trigger_dag_run(
        self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        """``POST /api/v2/dags/{dag_id}/dagRuns`` (a manual run, no logical date)."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id is not None:
            body["dag_run_id"] = run_id
        data: dict[str, Any] = self._json(
            "POST",
            f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns",
            f"trigger {dag_id}",
            json=body,
        )
        return data

    def get_dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._json(
            "GET",
            f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}",
            f"read run {run_id} of {dag_id}",
        )
        return data

    def failed_tasks(self, dag_id: str, run_id: str) -> list[str]:
        """Task ids (with map index if mapped) that failed in a run."""
        data = self._json(
            "GET",
            f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances",
            f"list the tasks of run {run_id}",
            params={"state": ["failed", "upstream_failed"], "limit": 1000},
        )
        out = []
        for ti in data.get("task_instances", []):
            if ti.get("state") != "failed":
                continue
            index = ti.get("map_index", -1)
            out.append(ti["task_id"] if index in (-1, None) else f"{ti['task_id']}[{index}]")
        return sorted(out)
