"""The serving service as a real uvicorn process on loopback, serving real registered versions
from a real MLflow server: offline-equal predictions, 4xx for every bad input, bearer-guarded
admin, a hot swap under concurrent load that loses nothing, and a prediction log that holds
exactly the requests answered, even after the lake was unwritable for a while."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dslc.lake import Lake
from dslc.serving.predlog import read_predictions
from dslc.usecases.flights.model import MODEL_FEATURES
from tests.integration.serving_server import (
    HOLDOUT_DAY,
    RegisteredModels,
    ServingServer,
    serving_models,  # noqa: F401  (the session fixture)
)
from tests.support import free_port

pytestmark = pytest.mark.integration

TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
MAX_RECORDS = 300
MAX_BODY = 200_000
MODEL = "flights_late"


class Ledger:
    """Every answered /predict request: what the prediction log must hold."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: dict[str, tuple[int, str, list[float]]] = {}

    def add(self, body: dict[str, Any]) -> None:
        probs = [p["probability"] for p in body["predictions"]]
        with self.lock:
            self.rows[body["request_id"]] = (len(probs), body["version"], probs)


@pytest.fixture(scope="module")
def lake_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"file://{tmp_path_factory.mktemp('serving') / 'lake'}"


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture(scope="module")
def server(serving_models: RegisteredModels, lake_url: str):  # noqa: F811
    env = {
        "DSLC_MLFLOW_TRACKING_URI": serving_models.tracking_uri,
        "DSLC_LAKE_URL": lake_url,
        "DSLC_SERVING_ADMIN_TOKEN": TOKEN,
        "DSLC_SERVING_MAX_RECORDS": str(MAX_RECORDS),
        "DSLC_SERVING_MAX_BODY_BYTES": str(MAX_BODY),
        "DSLC_SERVING_LOG_FLUSH_SECONDS": "0.2",
    }
    srv = ServingServer(f"models:/{MODEL}/{serving_models.versions[0]}", env=env)
    srv.start(timeout=90)
    yield srv
    srv.stop()


def predict(
    server: ServingServer, records: Any, ledger: Ledger | None = None, client: Any = httpx
) -> httpx.Response:
    resp = client.post(f"{server.url}/predict", json=records, timeout=30)
    if resp.status_code == 200 and ledger is not None:
        ledger.add(resp.json())
    return resp


def metrics(server: ServingServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{server.url}/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def wait_until(check: Any, timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- predictions ---------------------------------------------------------------------------------


def test_predictions_equal_the_offline_predictions(
    server: ServingServer,
    serving_models: RegisteredModels,  # noqa: F811
    ledger: Ledger,
):
    records = serving_models.records()
    got: list[float] = []
    versions = set()
    for i in range(0, len(records), MAX_RECORDS):
        resp = predict(server, records[i : i + MAX_RECORDS], ledger)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        versions.add(body["version"])
        assert body["model"] == MODEL and body["threshold"] == 0.5
        assert all(p["late"] == (p["probability"] >= 0.5) for p in body["predictions"])
        got.extend(p["probability"] for p in body["predictions"])
    (version,) = versions
    offline = serving_models.offline[version]
    assert len(got) == len(offline) == len(records)
    assert np.max(np.abs(np.array(got) - offline)) <= 1e-12
    # one record at a time (the record-by-record validation path) gives the same answers
    for i in (0, 7, len(records) - 1):
        one = predict(server, [records[i]], ledger).json()["predictions"][0]["probability"]
        assert abs(one - offline[i]) <= 1e-12


def test_records_may_carry_their_day_and_flight(
    server: ServingServer,
    serving_models: RegisteredModels,  # noqa: F811
    ledger: Ledger,
):
    records = serving_models.records(20, with_keys=True)
    assert {r["ds"] for r in records} == {HOLDOUT_DAY} and records[0]["flight"]
    resp = predict(server, records, ledger)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["predictions"]) == 20


@pytest.fixture(scope="module")
def good(serving_models: RegisteredModels) -> dict[str, Any]:  # noqa: F811
    """One valid record (features only)."""
    return serving_models.records(1)[0]


BAD_INPUTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("missing field", {"json": "missing:dest"}, 422, "'dest' is missing"),
    ("wrong type", {"json": {"temp": "cold"}}, 422, "'temp' must be a number or null"),
    ("unknown field", {"json": {"arr_delay": 12}}, 422, "unknown field 'arr_delay'"),
    ("out of range", {"json": {"sched_dep_hour": 24}}, 422, "'sched_dep_hour' must be between"),
    ("null category", {"json": {"carrier": None}}, 422, "'carrier' must be a string"),
    ("bad day", {"json": {"ds": "yesterday"}}, 422, "'ds' must be a date"),
    ("not a list", {"raw": b'{"carrier": "UA"}'}, 422, "JSON array"),
    ("empty list", {"raw": b"[]"}, 422, "empty"),
    ("record not an object", {"raw": b'["UA"]'}, 422, "must be a JSON object"),
    ("invalid JSON", {"raw": b'[{"carrier": "UA",'}, 422, "not valid JSON"),
    ("not JSON", {"raw": b"carrier=UA", "ctype": "text/plain"}, 415, "is not JSON"),
    ("too many records", {"many": MAX_RECORDS + 1}, 413, f"at most {MAX_RECORDS}"),
    ("body too large", {"raw": b"[" + b" " * MAX_BODY + b"]"}, 413, "larger than"),
    ("chunked body too large", {"chunked": MAX_BODY + 10}, 413, "larger than"),
]


def _send_bad(server: ServingServer, how: dict[str, Any], good: dict[str, Any]) -> httpx.Response:
    url = f"{server.url}/predict"
    if "json" in how:
        spec = how["json"]
        if isinstance(spec, str):
            field = spec.split(":", 1)[1]
            body: Any = [good, {k: v for k, v in good.items() if k != field}]
        else:
            body = [good, {**good, **spec}]
        return httpx.post(url, json=body)
    if "many" in how:
        return httpx.post(url, json=[good] * how["many"])
    if "chunked" in how:
        size = how["chunked"]

        def chunks():
            yield b"["
            for _ in range(size // 1000):
                yield b" " * 1000
            yield b"]"

        return httpx.post(url, content=chunks(), headers={"content-type": "application/json"})
    ctype = how.get("ctype", "application/json")
    return httpx.post(url, content=how["raw"], headers={"content-type": ctype})


@pytest.mark.parametrize(
    ("case", "how", "status", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_gets_its_4xx_naming_the_problem(
    server: ServingServer,
    good: dict[str, Any],
    case: str,
    how: dict[str, Any],
    status: int,
    message: str,
):
    resp = _send_bad(server, how, good)
    assert resp.status_code == status, resp.text
    detail = resp.json()["detail"]
    assert message in str(detail)
    if case in ("missing field", "wrong type", "unknown field", "out of range"):
        assert detail[0]["loc"][:2] == ["body", 1]  # the record's index, then the field


def test_no_bad_input_ever_became_a_500(server: ServingServer, good: dict[str, Any]):
    for how in [b[1] for b in BAD_INPUTS]:
        _send_bad(server, how, good)
    m = metrics(server)
    statuses = {dict(labels)["status"] for (name, labels) in m if name == "dslc_requests_total"}
    assert "500" not in statuses
    assert m[("dslc_requests_total", (("endpoint", "/predict"), ("status", "422")))] >= 1


# -- oversized bodies over a raw socket ------------------------------------------------------------


class RawHTTP:
    """One keep-alive connection that writes requests byte by byte as a test says."""

    def __init__(self, server: ServingServer) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, lower-cased headers, body (by its Content-Length)."""
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        size = int(headers.get("content-length", "0"))
        while len(self.buf) < size:
            self._recv()
        body, self.buf = self.buf[:size], self.buf[size:]
        return int(lines[0].split()[1]), headers, body

    def _recv(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data

    def close(self) -> None:
        self.sock.close()


def _post_head(extra: str) -> bytes:
    return (
        "POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + extra
        + "\r\n"
    ).encode()


def _chunked(total: int, size: int = 1 << 16) -> Iterator[bytes]:
    yield b"1\r\n[\r\n"
    for _ in range(total // size):
        yield b"%x\r\n" % size + b" " * size + b"\r\n"
    yield b"1\r\n]\r\n0\r\n\r\n"


def _assert_too_large(status: int, body: bytes) -> None:
    assert status == 413, body
    assert f"larger than {MAX_BODY} bytes" in json.loads(body)["detail"][0]["msg"]


def _assert_still_serves(conn: RawHTTP, good: dict[str, Any], ledger: Ledger) -> None:
    """A valid request on the same connection gets its 200: the rest of the body is gone."""
    body = json.dumps([good]).encode()
    conn.send(_post_head(f"Content-Length: {len(body)}\r\n") + body)
    status, _, answer = conn.response()
    assert status == 200, answer
    ledger.add(json.loads(answer))
    assert len(json.loads(answer)["predictions"]) == 1


BIG = 20 * MAX_BODY  # well past the limit, well under the drain bound


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_oversized_body_sent_whole_before_reading_gets_its_413(
    server: ServingServer, good: dict[str, Any], framing: str, ledger: Ledger
):
    """The client writes every byte before it reads: no reset, a JSON 413, a usable connection."""
    conn = RawHTTP(server)
    try:
        if framing == "content-length":
            conn.send(_post_head(f"Content-Length: {BIG}\r\n") + b"[" + b" " * (BIG - 2) + b"]")
        else:
            conn.send(_post_head("Transfer-Encoding: chunked\r\n"))
            for chunk in _chunked(BIG):
                conn.send(chunk)
        status, headers, body = conn.response()
        _assert_too_large(status, body)
        assert headers["content-type"] == "application/json"
        assert headers.get("connection") != "close"
        _assert_still_serves(conn, good, ledger)
    finally:
        conn.close()


def test_a_declared_oversized_body_is_refused_before_it_is_sent(
    server: ServingServer, good: dict[str, Any]
):
    """Expect: 100-continue (curl's way for big bodies), or a length the body never reaches."""
    conn = RawHTTP(server)
    try:
        conn.send(_post_head(f"Content-Length: {BIG}\r\nExpect: 100-continue\r\n"))
        status, _, body = conn.response()  # a 413, not "100 Continue": nothing was sent
        _assert_too_large(status, body)
    finally:
        conn.close()
    conn = RawHTTP(server)
    try:
        conn.send(_post_head(f"Content-Length: {BIG}\r\n") + b"[]")  # lies: 2 bytes come
        status, _, body = conn.response()
        _assert_too_large(status, body)
    finally:
        conn.close()
    assert server.get("/health") == (200, {"status": "ok"})


def test_an_endless_body_gets_its_413_and_the_connection_closed(
    server: ServingServer, good: dict[str, Any], ledger: Ledger
):
    """A stream past the drain bound is answered and closed; a reading client sees the 413."""
    from dslc.serving.service import DRAIN_BYTES

    conn = RawHTTP(server)
    stop = threading.Event()

    def stream() -> None:
        chunk = b"%x\r\n" % (1 << 16) + b" " * (1 << 16) + b"\r\n"
        with contextlib.suppress(OSError):
            conn.send(_post_head("Transfer-Encoding: chunked\r\n") + b"1\r\n[\r\n")
            while not stop.is_set():
                conn.send(chunk)

    sender = threading.Thread(target=stream, daemon=True)
    sender.start()
    try:
        status, headers, body = conn.response()
        _assert_too_large(status, body)
        assert headers.get("connection") == "close"
    finally:
        stop.set()
        conn.close()
        sender.join(10)
    assert DRAIN_BYTES > BIG  # the whole-body tests above stay under the bound
    assert predict(server, [good], ledger).status_code == 200


@pytest.mark.parametrize(
    "head",
    ["Content-Length: 10\r\n", ""],
    ids=["length smaller than the body", "no length"],
)
def test_a_body_its_length_does_not_frame_gets_a_4xx_and_the_server_goes_on(
    server: ServingServer, good: dict[str, Any], head: str, ledger: Ledger
):
    """What follows the declared body is read as the next request: a 4xx, never a hang."""
    conn = RawHTTP(server)
    try:
        conn.send(_post_head(head) + b"[" + b" " * (2 * MAX_BODY) + b"]")
        status, _, _ = conn.response()
        assert 400 <= status < 500
    finally:
        conn.close()
    assert predict(server, [good], ledger).status_code == 200


def test_httpx_gets_the_413_for_a_large_body_either_way(server: ServingServer):
    url = f"{server.url}/predict"
    json_h = {"content-type": "application/json"}
    whole = httpx.post(url, content=b"[" + b" " * BIG + b"]", headers=json_h, timeout=30)
    _assert_too_large(whole.status_code, whole.content)
    streamed = httpx.post(url, content=_raw_chunks(BIG), headers=json_h, timeout=30)
    _assert_too_large(streamed.status_code, streamed.content)


def _raw_chunks(total: int) -> Iterator[bytes]:
    yield b"["
    for _ in range(total // (1 << 16)):
        yield b" " * (1 << 16)
    yield b"]"


# -- unseen categories ---------------------------------------------------------------------------


def test_unseen_categories_are_answered_flagged_and_counted(
    server: ServingServer, good: dict[str, Any], ledger: Ledger
):
    def unseen_counts() -> dict[str, float]:
        m = metrics(server)
        return {
            dict(labels)["feature"]: v
            for (name, labels), v in m.items()
            if name == "dslc_unseen_categories_total"
        }

    before = unseen_counts()
    assert {"carrier", "origin", "dest"} <= before.keys()  # exported from the load on
    records = [
        good,
        {**good, "carrier": "ZZ"},
        {**good, "carrier": "QQ", "dest": "XXX"},
        {**good, "dest": good["dest"].lower()},
    ]
    for batch in (records, records * 5):  # record by record, and the column-wise path
        resp = predict(server, batch, ledger)
        assert resp.status_code == 200, resp.text
        got = resp.json()["predictions"]
        assert len(got) == len(batch)
        assert "unseen" not in got[0]
        assert [p.get("unseen") for p in got[:4]] == [
            None,
            ["carrier"],
            ["carrier", "dest"],
            ["dest"],
        ]
        # an unseen carrier is scored as missing, whichever it is
        other = predict(server, [{**good, "carrier": "Q9"}], ledger).json()["predictions"][0]
        assert got[1]["probability"] == other["probability"]
    after = unseen_counts()
    # 2 requests of 1x and 5x the records, plus the 2 one-record checks: 12 + 2 carriers
    assert after["carrier"] - before["carrier"] == 2 + 10 + 2
    assert after["dest"] - before["dest"] == 2 + 10
    assert after["origin"] == before["origin"]


def test_known_categories_get_no_unseen_key(
    server: ServingServer,
    serving_models: RegisteredModels,  # noqa: F811
    ledger: Ledger,
):
    for batch in (serving_models.records(1), serving_models.records(40)):
        body = predict(server, batch, ledger).json()
        assert all(set(p) == {"probability", "late"} for p in body["predictions"])


# -- status endpoints ----------------------------------------------------------------------------


def test_health_ready_docs(server: ServingServer, serving_models: RegisteredModels):  # noqa: F811
    assert server.get("/health") == (200, {"status": "ok"})
    status, ready = server.get("/ready")
    assert status == 200 and ready["model"] == MODEL
    assert ready["version"] in serving_models.versions and ready["loaded_at"]
    assert httpx.get(f"{server.url}/docs").status_code == 200
    spec = httpx.get(f"{server.url}/openapi.json").json()
    op = spec["paths"]["/predict"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body["type"] == "array" and body["maxItems"] == MAX_RECORDS
    assert body["items"]["required"] == MODEL_FEATURES
    assert body["items"]["additionalProperties"] is False
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/PredictResponse")
    assert {"413", "415", "422", "503"} <= op["responses"].keys()


def test_metrics_count_requests_latency_decisions_and_the_version(
    server: ServingServer, ledger: Ledger, good: dict[str, Any]
):
    assert predict(server, [good] * 3, ledger).status_code == 200
    m = metrics(server)
    ready = server.get("/ready")[1]
    assert m[("dslc_model_info", (("name", MODEL), ("version", ready["version"])))] == 1
    assert m[("dslc_requests_total", (("endpoint", "/predict"), ("status", "200")))] >= 1
    assert m[("dslc_request_seconds_count", (("endpoint", "/predict"),))] >= 1
    decided = sum(
        v for (name, labels), v in m.items() if name == "dslc_predictions_total" and labels
    )
    assert decided >= 3
    assert m[("dslc_batch_rows_count", ())] >= 1
    for name in ("dslc_prediction_errors_total", "dslc_prediction_log_dropped_rows_total"):
        assert m[(name, ())] == 0


# -- admin ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["no token", "wrong token", "not bearer"],
)
def test_admin_without_the_token_is_401(server: ServingServer, headers: dict[str, str]):
    load = httpx.post(f"{server.url}/admin/load", json={"version": "1"}, headers=headers)
    status = httpx.get(f"{server.url}/admin/status", headers=headers)
    assert load.status_code == status.status_code == 401
    assert load.headers["www-authenticate"] == "Bearer"


def test_admin_load_refuses_what_it_cannot_load(server: ServingServer):
    url = f"{server.url}/admin/load"
    assert httpx.get(f"{server.url}/admin/status", headers=ADMIN).status_code == 200
    both = httpx.post(url, json={"version": "1", "uri": "models:/x/1"}, headers=ADMIN)
    assert both.status_code == 422
    missing = httpx.post(url, json={"version": "999"}, headers=ADMIN)
    assert missing.status_code == 404 and "no version '999'" in missing.text
    other = httpx.post(url, json={"uri": "models:/other_model/1"}, headers=ADMIN)
    assert other.status_code == 422 and "serves 'flights_late'" in other.text


def test_hot_swap_under_load_loses_no_request(
    server: ServingServer,
    serving_models: RegisteredModels,  # noqa: F811
    ledger: Ledger,
):
    old = server.get("/ready")[1]["version"]
    new = next(v for v in serving_models.versions if v != old)
    records = serving_models.records()
    stop = threading.Event()
    seen: list[list[tuple[int, str | None, int, list[float]]]] = [[] for _ in range(8)]

    def client(k: int) -> None:
        with httpx.Client(timeout=30) as c:
            i = k * 37
            while not stop.is_set():
                offset = i % (len(records) - 5)
                resp = predict(server, records[offset : offset + 5], ledger, client=c)
                body = resp.json() if resp.status_code == 200 else {}
                probs = [p["probability"] for p in body.get("predictions", [])]
                seen[k].append((resp.status_code, body.get("version"), offset, probs))
                i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(seen))]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: sum(map(len, seen)) > 50, what="load before the swap")
        resp = httpx.post(f"{server.url}/admin/load", json={"version": new}, headers=ADMIN)
        assert resp.status_code == 202 and resp.json() == {"status": "loading", "version": new}
        server.wait_ready(timeout=60, version=new)
        after = sum(map(len, seen))
        wait_until(lambda: sum(map(len, seen)) > after + 50, what="load after the swap")
    finally:
        stop.set()
        for t in threads:
            t.join(30)

    answers = [a for per_client in seen for a in per_client]
    assert Counter(status for status, *_ in answers) == {200: len(answers)}
    assert {version for _, version, *_ in answers} == {old, new}
    for per_client in seen:  # atomic: once a client saw the new model, it sees only that
        versions = [version for _, version, *_ in per_client]
        first_new = versions.index(new) if new in versions else len(versions)
        assert set(versions[first_new:]) <= {new}
    for _, version, offset, probs in answers:  # each answer is entirely its version's
        want = serving_models.offline[version][offset : offset + 5]
        assert np.max(np.abs(np.array(probs) - want)) <= 1e-12
    status = httpx.get(f"{server.url}/admin/status", headers=ADMIN).json()
    assert status["serving"]["version"] == new and status["last_load"]["state"] == "loaded"


def test_a_failed_load_keeps_the_old_model_serving(
    server: ServingServer,
    serving_models: RegisteredModels,  # noqa: F811
    ledger: Ledger,
    good: dict[str, Any],
):
    serving = server.get("/ready")[1]["version"]
    bad = serving_models.corrupt_version
    resp = httpx.post(f"{server.url}/admin/load", json={"version": bad}, headers=ADMIN)
    assert resp.status_code == 202

    def finished() -> dict[str, Any] | None:
        s = httpx.get(f"{server.url}/admin/status", headers=ADMIN).json()
        return s if s["last_load"]["state"] != "loading" else None

    status = wait_until(finished, timeout=60, what="the corrupt version's load to end")
    assert status["last_load"]["state"] == "failed" and status["last_load"]["version"] == bad
    assert "zip" in status["last_load"]["error"].lower()  # skops could not read it
    assert status["serving"]["version"] == serving
    answer = predict(server, [good], ledger)
    assert answer.status_code == 200 and answer.json()["version"] == serving


def test_prediction_log_holds_exactly_the_requests_answered(
    server: ServingServer, lake_url: str, ledger: Ledger
):
    """Last in the module: stops the server (a graceful stop flushes the log)."""
    server.stop()
    lake = Lake(lake_url)
    today = dt.datetime.now(dt.UTC).date()
    days = {HOLDOUT_DAY} | {(today + dt.timedelta(days=d)).isoformat() for d in (-1, 0, 1)}
    logged = pd.concat([read_predictions(lake, MODEL, d) for d in sorted(days)])
    assert len(ledger.rows) > 0
    per_request = logged.groupby("request_id")
    assert set(per_request.groups) == set(ledger.rows)
    for request_id, rows in per_request:
        n, version, probs = ledger.rows[str(request_id)]
        assert len(rows) == n
        assert set(rows["model_version"]) == {version}
        assert rows["probability"].tolist() == probs
    assert logged[MODEL_FEATURES[:3]].notna().all().all()


# -- a lake that fails, then comes back ------------------------------------------------------


def test_an_unwritable_lake_degrades_logging_never_the_answers(
    serving_models: RegisteredModels,  # noqa: F811
    tmp_path: Path,
):
    root = tmp_path / "lake"
    root.mkdir()
    blocker = root / "predictions"
    blocker.write_text("a file where the log's directory should be: every write fails")
    env = {
        "DSLC_MLFLOW_TRACKING_URI": serving_models.tracking_uri,
        "DSLC_LAKE_URL": f"file://{root}",
        "DSLC_SERVING_ADMIN_TOKEN": None,  # admin disabled
        "DSLC_SERVING_LOG_FLUSH_SECONDS": "0.1",
    }
    version = serving_models.versions[0]
    srv = ServingServer(f"models:/{MODEL}/{version}", env=env)
    srv.start(timeout=90)
    ledger = Ledger()
    try:
        load = httpx.post(f"{srv.url}/admin/load", json={"version": version})
        assert load.status_code == 401 and "disabled" in load.text
        records = serving_models.records(40, with_keys=True)
        for i in range(10):
            assert predict(srv, records[i : i + 4 + i], ledger).status_code == 200
        wait_until(
            lambda: metrics(srv)[("dslc_prediction_log_errors_total", ())] >= 1,
            what="a failed flush to be counted",
        )
        assert "prediction log: cannot write" in srv.log_tail(20_000)
        blocker.unlink()  # the lake is back
        sent = sum(n for n, *_ in ledger.rows.values())
        wait_until(
            lambda: metrics(srv)[("dslc_prediction_log_rows_total", ())] == sent,
            what="the buffered rows to be written",
        )
        assert predict(srv, records[:3], ledger).status_code == 200
    finally:
        srv.stop()
    logged = read_predictions(Lake(f"file://{root}"), MODEL, HOLDOUT_DAY)
    assert Counter(logged["request_id"]) == {rid: n for rid, (n, *_) in ledger.rows.items()}
    assert set(logged["flight"]) <= {int(r["flight"]) for r in records}


def test_an_unreachable_mlflow_at_start_is_reported_and_retried(tmp_path: Path):
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"DSLC_MLFLOW_TRACKING_URI": dead, "DSLC_LAKE_URL": f"file://{tmp_path / 'lake'}"}
    srv = ServingServer(f"models:/{MODEL}/1", env=env)
    srv.start(timeout=90, wait_ready=False)
    try:

        def failed() -> dict[str, Any] | None:
            status, body = srv.get("/ready")
            last = (body or {}).get("last_load") or {}
            return body if status == 503 and last.get("state") == "failed" else None

        body = wait_until(failed, what="/ready to report the failed load")
        assert body["detail"] == "no model loaded"
        assert f"the MLflow server at {dead} is not reachable" in body["last_load"]["error"]
        assert srv.get("/health") == (200, {"status": "ok"})
        resp = httpx.post(f"{srv.url}/predict", json=[{"carrier": "UA"}])
        assert resp.status_code == 503 and resp.json() == {"detail": "no model loaded"}
        wait_until(lambda: "retrying the load" in srv.log_tail(), what="a retry")
    finally:
        srv.stop()
