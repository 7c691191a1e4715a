"""A small typed client for Airflow 3's REST API, and the ``dslc backfill`` command behind it.

Facts about Airflow 3.3 this relies on (checked in its source):

* ``POST /auth/token`` with JSON ``{"username", "password"}`` answers 201 ``{"access_token"}``
  (SimpleAuthManager); every ``/api/v2`` route but ``/monitor/health`` and ``/version`` needs
  ``Authorization: Bearer <token>``.
* ``POST /api/v2/backfills`` takes ``from_date``/``to_date`` and creates one run per logical date
  with ``from_date <= logical_date <= to_date``: ``to_date`` is *inclusive*. For a daily DAG the
  logical dates are midnights (UTC here), so ``--end 2013-01-03`` is sent as 2013-01-03T00:00Z.
* The scheduler does not start queued runs, backfills included, of a *paused* DAG, so
  :func:`backfill_cli` unpauses it first (and says so).
* ``POST /api/v2/backfills/dry_run`` lists the logical dates a backfill would create (honouring
  ``reprocess_behavior``); a backfill with nothing to create is refused with 422.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dslc.dev.console import CliError, make_console, reported
from dslc.settings import Settings, get_settings

if TYPE_CHECKING:
    import httpx
    from rich.console import Console

TERMINAL_STATES = frozenset({"success", "failed"})
REPROCESS_BEHAVIORS = ("none", "failed", "completed")
DAG_PARSE_TIMEOUT = 60.0
POLL_SECONDS = 2.0
BACKFILL_CREATE_ATTEMPTS = 8
BACKFILL_RETRY_SECONDS = 2.0
# Airflow allows one active backfill per DAG, so a long window is run as consecutive backfills
# of at most this many runs: each is created in a short transaction (see _create_part).
BACKFILL_PART_RUNS = 15


class AirflowApiError(CliError):
    """An error the user can act on; the CLI shows the message without a traceback."""


# --------------------------------------------------------------------------------------------
# Pure helpers (unit tested)


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


@dataclass
class BackfillProgress:
    """Where a backfill stands, from the states of the runs it is expected to create."""

    expected: list[dt.datetime]
    states: dict[dt.datetime, str] = field(default_factory=dict)
    run_ids: dict[dt.datetime, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.expected)

    def _count(self, wanted: Iterable[str]) -> int:
        wanted = set(wanted)
        return sum(1 for d in self.expected if self.states.get(d) in wanted)

    @property
    def succeeded(self) -> int:
        return self._count({"success"})

    @property
    def failed(self) -> int:
        return self._count({"failed"})

    @property
    def done(self) -> int:
        return self._count(TERMINAL_STATES)

    @property
    def running(self) -> int:
        return self._count({"running"})

    @property
    def finished(self) -> bool:
        return self.done == self.total

    @property
    def ok(self) -> bool:
        return self.finished and self.succeeded == self.total

    def failed_dates(self) -> list[dt.datetime]:
        return [d for d in self.expected if self.states.get(d) == "failed"]

    def missing_dates(self) -> list[dt.datetime]:
        return [d for d in self.expected if d not in self.states]

    def update(self, runs: Iterable[Mapping[str, Any]]) -> None:
        """Record the state of each run whose logical date is expected (others are ignored)."""
        wanted = set(self.expected)
        for run in runs:
            raw = run.get("logical_date")
            if not raw:
                continue
            when = parse_time(str(raw))
            if when in wanted:
                self.states[when] = str(run.get("state"))
                self.run_ids[when] = str(run.get("dag_run_id"))

    def describe(self) -> str:
        return (
            f"{self.done}/{self.total} done, {self.succeeded} ok, {self.failed} failed, "
            f"{self.running} running"
        )


def run_url(base_url: str, dag_id: str, run_id: str, task_id: str | None = None) -> str:
    """The Airflow 3 UI page of a DAG run (or of one of its tasks)."""
    url = f"{base_url}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    return f"{url}/tasks/{quote(task_id, safe='')}" if task_id else url


# --------------------------------------------------------------------------------------------
# The client


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

    # -- transport ---------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            return self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError):
            raise AirflowApiError(
                f"Airflow is not reachable at {self.base_url}: run `dslc up`"
            ) from None
        except httpx.TimeoutException:
            raise AirflowApiError(
                f"Airflow at {self.base_url} did not answer {method} {path} in time; "
                "check `dslc status`"
            ) from None

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

    # -- endpoints ---------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# The `dslc backfill` command


def wait_for_dag(
    client: AirflowClient,
    dag_id: str,
    console: Console,
    timeout: float = DAG_PARSE_TIMEOUT,
    interval: float = POLL_SECONDS,
) -> dict[str, Any]:
    """The DAG, waiting up to ``timeout`` s for the dag-processor to parse it after `dslc up`."""
    deadline = time.monotonic() + timeout
    dag = client.get_dag(dag_id)
    if dag is not None:
        return dag
    with console.status(f"Waiting for Airflow to parse DAG {dag_id!r} (up to {timeout:.0f}s)..."):
        while dag is None and time.monotonic() < deadline:
            time.sleep(interval)
            dag = client.get_dag(dag_id)
    if dag is not None:
        return dag
    raise AirflowApiError(_dag_not_found(client, dag_id))


def _dag_not_found(client: AirflowClient, dag_id: str) -> str:
    known = client.list_dag_ids()
    lines = [f"DAG {dag_id!r} not found in Airflow at {client.base_url}."]
    lines.append(f"Known DAGs: {', '.join(known)}" if known else "Airflow knows no DAGs yet.")
    for err in client.import_errors():
        trace = str(err.get("stack_trace", "")).strip().splitlines()
        lines.append(f"Import error in {err.get('filename')}: {trace[-1] if trace else '?'}")
    return "\n".join(lines)


def _summarize_failures(
    client: AirflowClient, dag_id: str, progress: BackfillProgress, console: Console
) -> None:
    for when in progress.failed_dates():
        run_id = progress.run_ids[when]
        tasks = client.failed_tasks(dag_id, run_id)
        task_text = ", ".join(tasks) if tasks else "no failed task (run marked failed)"
        task_id = tasks[0].split("[")[0] if tasks else None
        console.print(
            f"  [red]failed[/red] {when.date()}  task(s): {task_text}  "
            f"-> {run_url(client.base_url, dag_id, run_id, task_id)}",
            soft_wrap=True,
        )
    for when in progress.missing_dates():
        console.print(f"  [yellow]no run[/yellow] {when.date()} (the backfill did not create it)")


def follow_backfill(
    client: AirflowClient,
    dag_id: str,
    progress: BackfillProgress,
    window: tuple[dt.datetime, dt.datetime],
    console: Console,
    backfill_id: int | None = None,
    interval: float = POLL_SECONDS,
    timeout: float | None = None,
) -> BackfillProgress:
    """Poll the runs until every expected one is terminal (or the backfill ends without them)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"backfill {dag_id}", total=progress.total, detail="")
        while True:
            progress.update(client.list_dag_runs(dag_id, *window))
            detail = (
                f"ok {progress.succeeded}  failed {progress.failed}  running {progress.running}"
            )
            bar.update(task, completed=progress.done, detail=detail)
            if progress.finished:
                return progress
            if not client.scheduler_healthy():
                raise AirflowApiError(
                    "The Airflow scheduler is not running, so the backfill cannot progress "
                    f"({progress.describe()}). See `dslc status` and the scheduler log; "
                    "`dslc up` restarts it and the backfill resumes."
                )
            if backfill_id is not None and client.get_backfill(backfill_id).get("completed_at"):
                # Ended (e.g. cancelled in the UI) with runs that will never finish: read once more.
                progress.update(client.list_dag_runs(dag_id, *window))
                bar.update(task, completed=progress.done)
                return progress
            if deadline is not None and time.monotonic() > deadline:
                return progress
            time.sleep(interval)


def backfill_cli(
    dag_id: str,
    first: dt.date,
    last: dt.date,
    reprocess: str = "failed",
    wait: bool = True,
    *,
    settings: Settings | None = None,
    max_active_runs: int | None = None,
    timeout: float | None = None,
) -> bool:
    """`dslc backfill`: run ``dag_id`` for the days ``first..last`` (inclusive), follow it.

    Returns True iff every run of the window succeeded (or, with ``wait=False``, the backfill
    was created). User errors raise :class:`AirflowApiError` with a plain message.
    """
    with reported():
        return _backfill(
            dag_id,
            first,
            last,
            reprocess,
            wait,
            settings or get_settings(),
            max_active_runs,
            timeout,
        )


def _backfill(
    dag_id: str,
    first: dt.date,
    last: dt.date,
    reprocess: str,
    wait: bool,
    settings: Settings,
    max_active_runs: int | None,
    timeout: float | None,
) -> bool:
    console = make_console()
    window = backfill_window(first, last)
    with AirflowClient.from_settings(settings) as client:
        client.login()
        dag = wait_for_dag(client, dag_id, console)
        if dag.get("is_paused"):
            console.print(f"DAG {dag_id!r} is paused: unpausing it (paused DAGs run no backfill).")
        expected = client.dry_run_backfill(dag_id, *window, reprocess_behavior=reprocess)
        if not expected:
            return _nothing_to_do(client, dag_id, window, reprocess, console)
        running = client.active_backfill(dag_id)
        if running is not None:
            # Airflow allows one active backfill per DAG: follow it rather than fail (a re-run
            # of the demo, or a second terminal).
            console.print(
                f"Backfill #{running['id']} of {dag_id} ({running.get('from_date')} .. "
                f"{running.get('to_date')}) is still active: following it first."
            )
            run_window = (parse_time(running["from_date"]), parse_time(running["to_date"]))
            theirs = sorted(
                parse_time(r["logical_date"])
                for r in client.list_dag_runs(dag_id, *run_window)
                if r.get("run_type") == "backfill" and r.get("logical_date")
            )
            follow_backfill(
                client,
                dag_id,
                BackfillProgress(expected=theirs),
                run_window,
                console,
                int(running["id"]),
                timeout=timeout,
            )
            expected = client.dry_run_backfill(dag_id, *window, reprocess_behavior=reprocess)
            if not expected:
                return _nothing_to_do(client, dag_id, window, reprocess, console)
        progress = BackfillProgress(expected=sorted(expected))
        parts = backfill_parts(progress.expected, None if not wait else BACKFILL_PART_RUNS)
        for number, (part_first, part_last) in enumerate(parts, start=1):
            backfill_id = _create_part(
                client, dag_id, (part_first, part_last), reprocess, max_active_runs
            )
            runs = sum(1 for d in progress.expected if part_first <= d <= part_last)
            label = f" (part {number} of {len(parts)})" if len(parts) > 1 else ""
            console.print(
                f"Backfill #{backfill_id} of {dag_id}: {runs} run(s), {part_first.date()}.."
                f"{part_last.date()}{label} (reprocess={reprocess}). "
                f"Airflow UI: {client.base_url}/dags/{dag_id}",
                soft_wrap=True,
            )
            if not wait:
                return True
            try:
                follow_backfill(
                    client, dag_id, progress, window, console, backfill_id, timeout=timeout
                )
            except KeyboardInterrupt:
                console.print(
                    f"Stopped following; backfill #{backfill_id} goes on in Airflow: "
                    f"{client.base_url}/dags/{dag_id}"
                )
                return False
        return _report(client, dag_id, progress, console)


BACKFILL_SETTLE_SECONDS = 120.0


def backfill_parts(
    expected: list[dt.datetime], size: int | None
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Split the sorted logical dates into consecutive windows of at most ``size`` runs."""
    if not expected:
        return []
    if size is None or size >= len(expected):
        return [(expected[0], expected[-1])]
    return [
        (expected[i], expected[min(i + size, len(expected)) - 1])
        for i in range(0, len(expected), size)
    ]


def _create_part(
    client: AirflowClient,
    dag_id: str,
    part: tuple[dt.datetime, dt.datetime],
    reprocess: str,
    max_active_runs: int | None,
) -> int:
    """Create one backfill with the DAG paused meanwhile; returns its id.

    On SQLite, Airflow 3.3 can fail the creation with "database is locked" when the
    scheduler commits while the runs are being created, and roll it back after the scheduler
    already saw one of its runs (which crashed the scheduler in our tests). A paused DAG's runs
    are not scheduled, and short windows keep the creating transaction short.
    """
    # The scheduler marks a backfill completed a little after its last run ends; until then
    # Airflow refuses a new one for the DAG (409). Wait for that instead of failing.
    deadline = time.monotonic() + BACKFILL_SETTLE_SECONDS
    while client.active_backfill(dag_id) is not None and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    client.set_paused(dag_id, True)
    try:
        created = client.create_backfill(
            dag_id, *part, reprocess_behavior=reprocess, max_active_runs=max_active_runs
        )
    finally:
        client.set_paused(dag_id, False)
    return int(created["id"])


def _report(
    client: AirflowClient, dag_id: str, progress: BackfillProgress, console: Console
) -> bool:
    if progress.ok:
        console.print(f"[green]All {progress.total} run(s) of {dag_id} succeeded.[/green]")
        return True
    if not progress.finished and not progress.failed_dates():
        console.print(f"[yellow]Backfill of {dag_id} not finished: {progress.describe()}[/yellow]")
    else:
        console.print(f"[red]Backfill of {dag_id}: {progress.describe()}[/red]")
    _summarize_failures(client, dag_id, progress, console)
    return False


def _nothing_to_do(
    client: AirflowClient,
    dag_id: str,
    window: tuple[dt.datetime, dt.datetime],
    reprocess: str,
    console: Console,
) -> bool:
    """No run to create: report the runs that already exist in the window instead."""
    runs = client.list_dag_runs(dag_id, *window)
    progress = BackfillProgress(
        expected=sorted(parse_time(r["logical_date"]) for r in runs if r.get("logical_date"))
    )
    progress.update(runs)
    console.print(
        f"Nothing to backfill for {dag_id} with reprocess={reprocess}: "
        f"existing runs in the window: {progress.describe()}"
    )
    if progress.ok:
        return True
    if progress.failed:
        console.print("Use --reprocess failed (or completed) to run failed days again.")
    return _report(client, dag_id, progress, console)


def trigger_cli(
    dag_id: str,
    conf: dict[str, Any] | None = None,
    wait: bool = True,
    *,
    settings: Settings | None = None,
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """Trigger ``dag_id`` through the REST API and (optionally) wait for the run to end.

    Returns the final run record; on failure prints the failed tasks with their UI links.
    """
    console = make_console()
    with reported(), AirflowClient.from_settings(settings or get_settings()) as client:
        client.login()
        wait_for_dag(client, dag_id, console)
        run = client.trigger_dag_run(dag_id, conf)
        run_id = str(run["dag_run_id"])
        console.print(f"Triggered {dag_id} run {run_id}: {client.base_url}/dags/{dag_id}")
        if not wait:
            return run
        deadline = time.monotonic() + timeout
        with console.status(f"waiting for {dag_id} run {run_id}") as status:
            while run.get("state") not in TERMINAL_STATES:
                if time.monotonic() > deadline:
                    raise AirflowApiError(f"{dag_id} run {run_id} did not end within {timeout} s")
                time.sleep(POLL_SECONDS)
                run = client.get_dag_run(dag_id, run_id)
                status.update(f"{dag_id} run {run_id}: {run.get('state')}")
        if run["state"] != "success":
            tasks = client.failed_tasks(dag_id, run_id)
            task_id = tasks[0].split("[")[0] if tasks else None
            console.print(
                f"[red]{dag_id} run {run_id} failed[/red]: task(s) {', '.join(tasks) or '-'} "
                f"-> {run_url(client.base_url, dag_id, run_id, task_id)}"
            )
        return run
