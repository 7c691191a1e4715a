"""Unit tests of our Airflow REST client: the dates it sends, the answers it reads, and the
error messages a user sees. Airflow is faked (``tests.unit.dev.airflow_fakes``)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest

from dslc.dev import airflow_client
from dslc.dev.airflow_client import AirflowApiError
from tests.unit.dev.airflow_fakes import D1, D2, D3, client, run, token_ok


def test_backfill_window_is_inclusive_midnights_utc() -> None:
    first, last = airflow_client.backfill_window(dt.date(2013, 1, 1), dt.date(2013, 1, 3))
    assert (first, last) == (D1, D3)
    assert airflow_client.iso(last) == "2013-01-03T00:00:00Z"


def test_backfill_window_single_day_and_empty() -> None:
    assert airflow_client.backfill_window(dt.date(2013, 1, 2), dt.date(2013, 1, 2)) == (D2, D2)
    with pytest.raises(ValueError, match="empty"):
        airflow_client.backfill_window(dt.date(2013, 1, 2), dt.date(2013, 1, 1))


@pytest.mark.parametrize(
    "raw", ["2013-01-02T00:00:00Z", "2013-01-02T00:00:00+00:00", "2013-01-02T00:00:00"]
)
def test_parse_time_accepts_airflow_formats(raw: str) -> None:
    assert airflow_client.parse_time(raw) == D2


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"detail": "There is already a running backfill for dag ingest"}, "already a running"),
        (
            {"detail": [{"loc": ["body", "reprocess_behavior"], "msg": "Input should be 'none'"}]},
            "reprocess_behavior: Input should be 'none'",
        ),
        ({"detail": {"reason": "not_found", "message": "x"}}, "not_found"),
        ("plain text", "plain text"),
    ],
)
def test_format_detail(body: Any, expected: str) -> None:
    assert expected in airflow_client.format_detail(body)


def test_not_reachable_says_run_dslc_up() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(
        AirflowApiError, match=r"not reachable at http://127\.0\.0\.1:18080.*dslc up"
    ):
        client(handler).login()


def test_wrong_password_is_a_clear_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"detail": "Invalid credentials"})

    with pytest.raises(AirflowApiError, match="rejected the password of user 'admin'"):
        client(handler).login()


def test_expired_token_is_renewed_once() -> None:
    logins = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            logins.append(1)
            return httpx.Response(201, json={"access_token": f"tok{len(logins)}"})
        if request.headers["Authorization"] == "Bearer tok1":
            return httpx.Response(401, json={"detail": "expired"})
        return httpx.Response(200, json={"dag_id": "ingest", "is_paused": False})

    assert client(handler).get_dag("ingest") == {"dag_id": "ingest", "is_paused": False}
    assert len(logins) == 2


def test_create_backfill_body_and_conflict_detail() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if (resp := token_ok(request)) is not None:
            return resp
        assert request.headers["Authorization"] == "Bearer tok"
        seen.append(json.loads(request.content))
        detail = "There is already a running backfill for dag ingest"
        return httpx.Response(409, json={"detail": detail})

    with pytest.raises(AirflowApiError, match=r"HTTP 409.*already a running backfill"):
        client(handler).create_backfill("ingest", D1, D3, "failed", max_active_runs=2)
    assert seen == [
        {
            "dag_id": "ingest",
            "from_date": "2013-01-01T00:00:00Z",
            "to_date": "2013-01-03T00:00:00Z",
            "reprocess_behavior": "failed",
            "max_active_runs": 2,
        }
    ]


def test_unknown_reprocess_behavior_is_refused_locally() -> None:
    with pytest.raises(ValueError, match="reprocess_behavior"):
        client(lambda r: httpx.Response(500)).create_backfill("ingest", D1, D3, "all")


def test_list_dag_runs_pages_and_filters_by_logical_date() -> None:
    queries: list[httpx.QueryParams] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if (resp := token_ok(request)) is not None:
            return resp
        queries.append(request.url.params)
        offset = int(request.url.params["offset"])
        page = [run(D1, "success")] * (100 if offset == 0 else 5)
        return httpx.Response(200, json={"dag_runs": page, "total_entries": 105})

    runs = client(handler).list_dag_runs("ingest", D1, D3)
    assert len(runs) == 105
    assert [q["offset"] for q in queries] == ["0", "100"]
    assert queries[0]["logical_date_gte"] == "2013-01-01T00:00:00Z"
    assert queries[0]["logical_date_lte"] == "2013-01-03T00:00:00Z"


def test_failed_tasks_ignores_upstream_failed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if (resp := token_ok(request)) is not None:
            return resp
        assert request.url.params.get_list("state") == ["failed", "upstream_failed"]
        tis = [
            {"task_id": "validate", "state": "failed", "map_index": -1},
            {"task_id": "build_features", "state": "upstream_failed", "map_index": -1},
            {"task_id": "shard", "state": "failed", "map_index": 2},
        ]
        return httpx.Response(200, json={"task_instances": tis})

    assert client(handler).failed_tasks("ingest", "r1") == ["shard[2]", "validate"]


def test_a_late_answer_to_a_repeatable_request_is_tried_again_but_a_post_is_not() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        if request.method == "PATCH" and calls.count("PATCH") < 3:
            raise httpx.ReadTimeout("busy", request=request)
        if request.method == "POST":
            raise httpx.ReadTimeout("busy", request=request)
        return httpx.Response(200, json={"dag_id": "ingest", "is_paused": False})

    c = airflow_client.AirflowClient(
        "http://airflow.test", "admin", "pw", transport=httpx.MockTransport(handler)
    )
    c.set_paused("ingest", False)
    assert calls.count("PATCH") == 3  # two late answers, then the third try
    calls.clear()
    with pytest.raises(AirflowApiError, match=r"did not answer POST \S+ in time; check"):
        c.request("POST", "/api/v2/dags/ingest/dagRuns", json={})
    assert calls == ["POST"]  # never repeated: it could start a second run
