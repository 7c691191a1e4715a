"""Unit tests of ``dslc backfill``: progress accounting, the parts it creates, what it reports.
Airflow is faked (``tests.unit.dev.airflow_fakes``): runs finish after a few polls."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from dslc.dev import backfill
from dslc.dev.airflow_client import AirflowApiError, AirflowClient
from dslc.dev.backfill import BackfillProgress
from tests.unit.dev.airflow_fakes import BASE, D1, D2, D3, UTC, client, run, token_ok


def test_progress_counts_only_expected_runs() -> None:
    progress = BackfillProgress(expected=[D1, D2, D3])
    progress.update(
        [
            run(D1, "success"),
            run(D2, "running"),
            run(dt.datetime(2013, 1, 4, tzinfo=UTC), "failed"),  # outside the backfill
        ]
    )
    assert (progress.total, progress.done, progress.succeeded, progress.failed) == (3, 1, 1, 0)
    assert progress.running == 1
    assert not progress.finished
    assert progress.missing_dates() == [D3]
    progress.update([run(D2, "failed"), run(D3, "success")])
    assert progress.finished and not progress.ok
    assert progress.failed_dates() == [D2]
    assert progress.describe() == "3/3 done, 2 ok, 1 failed, 0 running"


def test_progress_ok_only_when_all_succeeded() -> None:
    progress = BackfillProgress(expected=[D1, D2])
    progress.update([run(D1, "success"), run(D2, "success")])
    assert progress.ok


def test_run_url_quotes_run_id() -> None:
    url = backfill.run_url(BASE, "ingest", "backfill__2013-01-01T00:00:00+00:00", "extract")
    assert url == (
        f"{BASE}/dags/ingest/runs/backfill__2013-01-01T00%3A00%3A00%2B00%3A00/tasks/extract"
    )


def test_dag_not_found_lists_known_dags_and_import_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if (resp := token_ok(request)) is not None:
            return resp
        path = request.url.path
        if path == "/api/v2/dags/nope":
            return httpx.Response(404, json={"detail": "not found"})
        if path == "/api/v2/dags":
            return httpx.Response(200, json={"dags": [{"dag_id": "train"}, {"dag_id": "ingest"}]})
        if path == "/api/v2/importErrors":
            trace = "Traceback...\nNameError: name 'x' is not defined"
            errors = [{"filename": "/dags/bad.py", "stack_trace": trace}]
            return httpx.Response(200, json={"import_errors": errors})
        return httpx.Response(500)

    from rich.console import Console

    with pytest.raises(AirflowApiError) as info:
        backfill.wait_for_dag(client(handler), "nope", Console(quiet=True), timeout=0.0)
    message = info.value.message
    assert "DAG 'nope' not found" in message
    assert "Known DAGs: ingest, train" in message
    assert "/dags/bad.py: NameError: name 'x' is not defined" in message


class FakeAirflow:
    """Enough of the REST API for backfill_cli: runs finish after a few polls."""

    def __init__(self, final: dict[dt.datetime, str], paused: bool = False) -> None:
        self.final = final
        self.paused = paused
        self.polls = 0
        self.patched: list[Any] = []
        self.created: list[Any] = []
        self.active: list[Any] = []
        self.backfill_reads = 0
        self.settle_reads = 0
        self.refused = 0
        self.closed: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if (resp := token_ok(request)) is not None:
            return resp
        path, method = request.url.path, request.method
        if path == "/api/v2/dags/ingest" and method == "GET":
            return httpx.Response(200, json={"dag_id": "ingest", "is_paused": self.paused})
        if path == "/api/v2/dags/ingest" and method == "PATCH":
            self.patched.append(json.loads(request.content))
            self.paused = json.loads(request.content)["is_paused"]
            return httpx.Response(200, json={"dag_id": "ingest", "is_paused": self.paused})
        if path == "/api/v2/backfills/dry_run":
            dates = [{"logical_date": d.isoformat()} for d in self.final]
            return httpx.Response(200, json={"backfills": dates, "total_entries": len(dates)})
        if path == "/api/v2/backfills":
            return self.backfills(request)
        if path.startswith("/api/v2/backfills/"):
            return self.one_backfill(path)
        if path == "/api/v2/dags/ingest/dagRuns":
            self.polls += 1
            runs = [
                run(d, state if self.polls >= 2 else "queued") for d, state in self.final.items()
            ]
            return httpx.Response(200, json={"dag_runs": runs, "total_entries": len(runs)})
        if path.endswith("/taskInstances"):
            tis = [{"task_id": "validate", "state": "failed", "map_index": -1}]
            return httpx.Response(200, json={"task_instances": tis})
        return httpx.Response(500, json={"detail": f"unexpected {method} {path}"})

    def one_backfill(self, path: str) -> httpx.Response:
        if path.endswith("/cancel"):
            backfill_id = int(path.split("/")[-2])
            mine = [b for b in self.active if b["id"] == backfill_id and not b["completed_at"]]
            if not mine:
                return httpx.Response(409, json={"detail": "Backfill is already completed."})
            mine[0]["completed_at"] = "2026-01-01T00:00:01Z"
            self.closed.append(backfill_id)
            return httpx.Response(200, json=mine[0])
        backfill_id = int(path.rsplit("/", 1)[-1])
        found = [b for b in self.active if b["id"] == backfill_id]
        return httpx.Response(200, json=found[0] if found else {"id": backfill_id})

    def backfills(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            # Like the scheduler: a backfill is marked completed a few reads after its runs end.
            self.backfill_reads += 1
            if self.polls >= 2 and self.backfill_reads > self.settle_reads:
                for b in self.active:
                    b["completed_at"] = b["completed_at"] or "2026-01-01T00:00:00Z"
            return httpx.Response(200, json={"backfills": self.active, "total_entries": 0})
        if any(not b["completed_at"] for b in self.active):
            self.refused += 1
            detail = "There is already a running backfill for dag ingest"
            return httpx.Response(409, json={"detail": detail})
        self.created.append(json.loads(request.content))
        created = {"id": 6 + len(self.created), "completed_at": None}
        self.active.append(created)
        return httpx.Response(200, json={"id": created["id"]})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeAirflow]:
    def make(final: dict[dt.datetime, str], paused: bool = False) -> FakeAirflow:
        airflow = FakeAirflow(final, paused)
        monkeypatch.setattr(
            AirflowClient, "from_settings", classmethod(lambda cls, settings=None: client(airflow))
        )
        monkeypatch.setattr(backfill, "POLL_SECONDS", 0.0)
        monkeypatch.setattr(backfill.time, "sleep", lambda _s: None)
        return airflow

    return make


def test_backfill_cli_unpauses_and_succeeds(
    fake: Callable[..., FakeAirflow], capsys: pytest.CaptureFixture[str]
) -> None:
    airflow = fake({D1: "success", D2: "success", D3: "success"}, paused=True)
    ok = backfill.backfill_cli("ingest", dt.date(2013, 1, 1), dt.date(2013, 1, 3), "failed")
    assert ok is True
    # Paused while the runs are created (a race on SQLite), unpaused for them to run.
    assert airflow.patched == [{"is_paused": True}, {"is_paused": False}]
    assert airflow.created[0]["to_date"] == "2013-01-03T00:00:00Z"
    out = capsys.readouterr().out
    assert "unpausing" in out
    assert "All 3 run(s) of ingest succeeded" in out


def test_backfill_cli_reports_failed_days_and_tasks(
    fake: Callable[..., FakeAirflow], capsys: pytest.CaptureFixture[str]
) -> None:
    fake({D1: "success", D2: "failed", D3: "success"})
    ok = backfill.backfill_cli("ingest", dt.date(2013, 1, 1), dt.date(2013, 1, 3), "failed")
    assert ok is False
    out = capsys.readouterr().out
    assert "1 failed" in out
    assert "2013-01-02" in out and "validate" in out
    assert f"{BASE}/dags/ingest/runs/" in out


def test_backfill_cli_no_wait_returns_after_create(fake: Callable[..., FakeAirflow]) -> None:
    airflow = fake({D1: "failed"})
    assert backfill.backfill_cli(
        "ingest", dt.date(2013, 1, 1), dt.date(2013, 1, 1), "none", wait=False
    )
    assert airflow.polls == 0


def test_backfill_cli_follows_an_active_backfill_before_creating(
    fake: Callable[..., FakeAirflow], capsys: pytest.CaptureFixture[str]
) -> None:
    airflow = fake({D1: "success", D2: "success", D3: "success"})
    airflow.active = [
        {"id": 3, "from_date": D1.isoformat(), "to_date": D3.isoformat(), "completed_at": None}
    ]
    assert backfill.backfill_cli("ingest", dt.date(2013, 1, 1), dt.date(2013, 1, 3), "failed")
    out = capsys.readouterr().out
    assert "Backfill #3 of ingest" in out and "still active: following it" in out
    assert airflow.paused is False


def test_backfill_parts_split_long_windows_into_consecutive_runs() -> None:
    days = [dt.datetime(2013, 1, 1, tzinfo=UTC) + dt.timedelta(days=i) for i in range(40)]
    parts = backfill.backfill_parts(days, 15)
    assert [(a.day, b.day) for a, b in parts] == [(1, 15), (16, 30), (31, 9)]
    assert backfill.backfill_parts(days, None) == [(days[0], days[-1])]
    assert backfill.backfill_parts([], 15) == []


def test_long_backfill_is_created_part_by_part_with_the_dag_paused_meanwhile(
    fake: Callable[..., FakeAirflow], capsys: pytest.CaptureFixture[str]
) -> None:
    days = [dt.datetime(2013, 1, 1, tzinfo=UTC) + dt.timedelta(days=i) for i in range(31)]
    airflow = fake(dict.fromkeys(days, "success"))
    assert backfill.backfill_cli("ingest", dt.date(2013, 1, 1), dt.date(2013, 1, 31), "failed")
    assert [(b["from_date"][:10], b["to_date"][:10]) for b in airflow.created] == [
        ("2013-01-01", "2013-01-15"),
        ("2013-01-16", "2013-01-30"),
        ("2013-01-31", "2013-01-31"),
    ]
    assert airflow.patched == [{"is_paused": True}, {"is_paused": False}] * 3
    out = capsys.readouterr().out
    assert "(part 3 of 3)" in out and "All 31 run(s) of ingest succeeded" in out


def test_each_finished_part_is_closed_at_once_instead_of_waiting_for_the_scheduler(
    fake: Callable[..., FakeAirflow],
) -> None:
    """The scheduler marks a backfill completed only every 30 s: a part whose runs are all
    terminal is closed by the client, so the next part is created without that wait."""
    days = [dt.datetime(2013, 1, 1, tzinfo=UTC) + dt.timedelta(days=i) for i in range(31)]
    airflow = fake(dict.fromkeys(days, "success"))
    airflow.settle_reads = 10**6  # the scheduler never gets round to it in this test
    assert backfill.backfill_cli("ingest", dt.date(2013, 1, 1), dt.date(2013, 1, 31), "failed")
    assert airflow.closed == [7, 8, 9]
    assert len(airflow.created) == 3
    assert airflow.refused == 0


def test_a_part_with_runs_still_going_is_not_closed(fake: Callable[..., FakeAirflow]) -> None:
    """Closing cancels queued runs: a part is closed only once all its runs are terminal."""
    airflow = fake({D1: "success", D2: "running"})
    assert not backfill.backfill_cli("ingest", D1.date(), D2.date(), "failed", timeout=0.0)
    assert airflow.closed == []


def test_a_new_backfill_waits_until_the_previous_one_is_marked_completed(
    fake: Callable[..., FakeAirflow],
) -> None:
    """Its runs are done but the scheduler has not marked the backfill completed yet: creating
    a new one then would be refused (409), so the client waits for the mark."""
    airflow = fake({D1: "success", D2: "success", D3: "success"})
    airflow.polls = 2  # the old backfill's runs are over
    airflow.settle_reads = 3  # completed only on the 4th read
    airflow.active = [
        {"id": 3, "from_date": D1.isoformat(), "to_date": D1.isoformat(), "completed_at": None}
    ]
    part = (D2, D3)
    assert backfill._create_part(client(airflow), "ingest", part, "failed", None) == 7
    assert airflow.refused == 0
    assert airflow.backfill_reads == 4
    assert airflow.created[0]["from_date"] == "2013-01-02T00:00:00Z"
