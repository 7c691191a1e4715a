"""The lake when its S3 server stops answering: each call is bounded and fails naming the store.

A moto_server of its own is frozen with SIGSTOP (the kernel still accepts connections, nobody
answers: the hang of a stuck server, not the quick refusal of a stopped one) and thawed after.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from dslc.errors import ServiceUnavailableError
from dslc.lake import LakeUnavailableError
from tests.s3.conftest import ACCESS_KEY, CONN_ID, SECRET_KEY, S3Server, _wait_until_up
from tests.support import free_port

pytestmark = pytest.mark.s3


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[S3Server, int]]:
    """A moto_server only this test uses (freezing the session's would stall the others)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=out,
        )
    try:
        _wait_until_up(proc, endpoint, log, timeout=60)
        server = S3Server(endpoint=endpoint, bucket="frozen")
        server.client().create_bucket(Bucket=server.bucket)
        yield server, proc.pid
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=10)


def use_connection(
    monkeypatch: pytest.MonkeyPatch, server: S3Server, config_kwargs: dict[str, Any] | None = None
) -> None:
    """Connection ``lake_s3`` to ``server``; a nested extra (``config_kwargs``) only fits a
    connection URI as JSON in ``__extra__``, as the distributed stack writes it."""
    from dslc.settings import get_settings

    extra: dict[str, Any] = {"endpoint_url": server.endpoint, "region_name": "us-east-1"}
    if config_kwargs is not None:
        extra["config_kwargs"] = config_kwargs
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        f"aws://{ACCESS_KEY}:{SECRET_KEY}@/?__extra__={quote(json.dumps(extra), safe='')}",
    )
    monkeypatch.setenv("DSLC_LAKE_URL", f"s3://{server.bucket}/lake")
    monkeypatch.setenv("DSLC_LAKE_CONN_ID", CONN_ID)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()


def test_the_lake_client_is_bounded_unless_the_connection_says_otherwise(
    own_server: tuple[S3Server, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dslc_airflow.lake import S3_CLIENT_CONFIG, lake

    server, _pid = own_server
    use_connection(monkeypatch, server)
    fs = lake().fs
    assert {k: fs.config_kwargs[k] for k in S3_CLIENT_CONFIG} == S3_CLIENT_CONFIG
    assert fs.retries == 1  # s3fs's loop around botocore's: one try, botocore retries

    use_connection(monkeypatch, server, {"read_timeout": 2})
    fs = lake().fs
    assert fs.config_kwargs["read_timeout"] == 2
    assert fs.config_kwargs["retries"] == S3_CLIENT_CONFIG["retries"]


def test_a_frozen_s3_server_fails_a_call_in_seconds_naming_the_store(
    own_server: tuple[S3Server, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dslc_airflow.lake import lake

    server, pid = own_server
    config = {"connect_timeout": 1, "read_timeout": 1}
    use_connection(monkeypatch, server, {**config, "retries": {"total_max_attempts": 2}})
    s3 = lake()
    s3.write_text("hello", "landing/flights/ds=2013-01-02/a.csv")
    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(LakeUnavailableError) as err:
            s3.ls("landing/flights/ds=2013-01-02")
        elapsed = time.monotonic() - start
    finally:
        os.kill(pid, signal.SIGCONT)
    # Two 1 s tries and botocore's backoff; s3fs's own five tries around them would take 10 s+.
    assert elapsed < 8, f"a call to a frozen server took {elapsed:.1f} s"
    assert isinstance(err.value, ServiceUnavailableError)  # Airflow keeps the task's retries
    message = str(err.value)
    assert message.startswith(
        f"the lake's object store (s3, {server.endpoint}) did not answer while trying to list "
        f"s3://{server.bucket}/lake/landing/flights/ds=2013-01-02: "
    ), message
    assert "Read timeout" in message, message
    # Thawed, the same lake object works again.
    assert s3.ls("landing/flights/ds=2013-01-02") == ["a.csv"]
