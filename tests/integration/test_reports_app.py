"""The report route through Airflow's real api-server app, auth and JWTs.

``airflow.api_fastapi.app.create_app`` builds the api-server as ``airflow api-server`` does,
mounting the plugins from plugins/; tokens come from Airflow's own auth manager
(``generate_jwt``), so the route is checked by the same code that guards the REST API.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DAY = "2013-06-02"
PAGE = "<html><body>drift verdict</body></html>"
SECRET = "TOP-SECRET-CONTENT"


@pytest.fixture(scope="module")
def api(airflow_db: None, tmp_path_factory: pytest.TempPathFactory):
    """The api-server app over a lake with one drift report and one validation result."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    from dslc import reports
    from dslc.lake import Lake

    root = tmp_path_factory.mktemp("reports-lake") / "lake"
    lake = Lake(f"file://{root}")
    lake.write_text(PAGE, reports.drift_report_key(DAY))
    lake.write_text("<html>validation</html>", reports.validation_key("flights", DAY))
    secret = root.parent / "secret.txt"
    secret.write_text(SECRET)
    os.environ["DSLC_LAKE_URL"] = lake.url
    try:
        app = create_app(apps="core")
        with TestClient(app) as client:
            client.asgi = app  # type: ignore[attr-defined]
            yield client, lake, secret
    finally:
        os.environ.pop("DSLC_LAKE_URL", None)


def token(role: str = "VIEWER") -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="ana", role=role))


def test_anonymous_gets_401(api) -> None:
    client, _lake, _secret = api
    r = client.get(f"/dslc/reports/monitoring/drift/ds={DAY}/report.html")
    assert r.status_code == 401


def test_forged_token_is_refused(api) -> None:
    client, _lake, _secret = api
    r = client.get(
        f"/dslc/reports/monitoring/drift/ds={DAY}/report.html",
        headers={"Authorization": "Bearer eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhbmEifQ.x"},
    )
    assert r.status_code in (401, 403)


def test_logged_in_viewer_gets_the_report(api) -> None:
    client, _lake, _secret = api
    r = client.get(
        f"/dslc/reports/monitoring/drift/ds={DAY}/report.html",
        headers={"Authorization": f"Bearer {token()}"},
    )
    assert r.status_code == 200, r.text
    assert r.text == PAGE
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"].startswith("sandbox")


def test_the_ui_cookie_works_too(api) -> None:
    client, _lake, _secret = api
    client.cookies.set("_token", token())
    try:
        r = client.get(f"/dslc/reports/validation/flights/ds={DAY}/index.html")
    finally:
        client.cookies.clear()
    assert r.status_code == 200, r.text
    assert "validation" in r.text


@pytest.mark.parametrize(
    "path",
    [
        "monitoring/drift/ds=2013-06-02/../../../secret.txt",
        "monitoring/drift/ds=2013-06-02/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "monitoring%2fdrift%2fds=2013-06-02%2f..%2f..%2f..%2fsecret.txt",
        "monitoring/drift/ds=2013-06-02/%252e%252e/report.html",
        "/etc/passwd",
        "%2fetc%2fpasswd",
        "features/flights/ds=2013-06-02/_SUCCESS",
        "monitoring/drift/ds=2013-06-03/report.html",  # a report not written yet
    ],
)
def test_what_is_not_a_report_is_404(api, path: str) -> None:
    client, _lake, _secret = api
    status, body = raw_get(client.asgi, f"/dslc/reports/{path}", token())
    assert status == 404, (path, status, body)
    assert SECRET not in body


def raw_get(app, raw_path: str, bearer: str) -> tuple[int, str]:
    """GET with the path exactly as given: HTTP clients (httpx too) drop ``..`` segments
    before sending, a hand-written request or a proxy need not."""
    import asyncio
    from urllib.parse import unquote

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("testclient", 50000),
        "root_path": "",
        "path": unquote(raw_path),  # what uvicorn puts in the scope: decoded once
        "raw_path": raw_path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {bearer}".encode())],
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body.decode()


def test_a_symlink_out_of_the_folder_is_refused(api) -> None:
    client, lake, secret = api
    link = Path(lake.path("monitoring/drift/ds=2013-06-04"))
    link.mkdir(parents=True)
    (link / "report.html").symlink_to(secret)
    r = client.get(
        "/dslc/reports/monitoring/drift/ds=2013-06-04/report.html",
        headers={"Authorization": f"Bearer {token()}"},
    )
    assert r.status_code == 404
    assert SECRET not in r.text
    assert "leads out of" in r.json()["detail"]
