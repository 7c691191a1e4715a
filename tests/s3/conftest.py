"""A real S3-compatible server for the session: moto_server on a free loopback port.

The server and its bucket live for the whole session; each test gets its own prefix in the
bucket and sees ``DSLC_LAKE_URL``/``DSLC_LAKE_CONN_ID``/``AIRFLOW_CONN_LAKE_S3`` only while it
runs, so nothing leaks into the tests that follow.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support import free_port

BUCKET = "dslc-lake"
CONN_ID = "lake_s3"
# moto accepts any credentials; these only have to be well-formed.
ACCESS_KEY, SECRET_KEY = "testing-key", "testing-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix`` in the bucket, straight from the server."""
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _wait_until_up(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"moto_server did not answer at {url} within {timeout} s: {log.read_text()}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto_server on 127.0.0.1:<free port> with one bucket; stopped at the end of the session."""
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: install the dev requirements (moto[server])")
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    try:
        _wait_until_up(proc, endpoint, log, timeout=60)
        server = S3Server(endpoint=endpoint, bucket=BUCKET)
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def s3_lake_url(
    s3_server: S3Server, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Point settings at ``s3://<bucket>/<this test>/lake`` through connection ``lake_s3``."""
    from dslc.settings import get_settings

    prefix = re.sub(r"[^a-zA-Z0-9_-]+", "-", request.node.name).strip("-")
    url = f"s3://{s3_server.bucket}/{prefix}/lake"
    endpoint = quote(s3_server.endpoint, safe="")
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        f"aws://{ACCESS_KEY}:{SECRET_KEY}@/?endpoint_url={endpoint}&region_name=us-east-1",
    )
    monkeypatch.setenv("DSLC_LAKE_URL", url)
    monkeypatch.setenv("DSLC_LAKE_CONN_ID", CONN_ID)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # No ambient AWS identity may stand in for the connection's.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()
