"""Airflow's REST API faked with ``httpx.MockTransport``, for the client and backfill tests.

These tests check what *our* code sends and how it reads the answers, not Airflow.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import httpx

from dslc.dev.airflow_client import AirflowClient

UTC = dt.UTC
D1, D2, D3 = (dt.datetime(2013, 1, d, tzinfo=UTC) for d in (1, 2, 3))
BASE = "http://127.0.0.1:18080"

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler) -> AirflowClient:
    return AirflowClient(BASE, "admin", "pw", transport=httpx.MockTransport(handler))


def token_ok(request: httpx.Request) -> httpx.Response | None:
    if request.url.path == "/auth/token":
        assert json.loads(request.content) == {"username": "admin", "password": "pw"}
        return httpx.Response(201, json={"access_token": "tok"})
    return None


def run(ds: dt.datetime, state: str) -> dict[str, Any]:
    return {
        "dag_run_id": f"backfill__{ds.isoformat()}",
        "logical_date": ds.isoformat().replace("+00:00", "Z"),
        "state": state,
    }
