"""The lake on a real S3 API (moto_server), reached the way tasks reach it.

``dslc_airflow.lake.lake()`` builds the filesystem through ``airflow.sdk.io`` and the amazon
provider's ``aws`` connection (here from ``AIRFLOW_CONN_LAKE_S3``), outside any task context.
What lands on the server is checked with boto3 directly, not through the code under test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from dslc.data import ingest, sources
from dslc.lake import MANIFEST, Lake, PartitionNotFoundError, parquet_bytes
from tests.s3.conftest import ACCESS_KEY, SECRET_KEY, S3Server

pytestmark = pytest.mark.s3

KEY = "raw/flights/ds=2013-01-02"


def frame(n: int = 3, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "flight": [offset + i for i in range(n)],
            "carrier": (["UA", "AA", "B6"] * n)[:n],
            "delay": [1.5 * i for i in range(n)],
        }
    )


def s3_lake() -> Lake:
    from dslc_airflow.lake import lake

    return lake()


def prefix_of(url: str, server: S3Server) -> str:
    return url.removeprefix(f"s3://{server.bucket}/")


def test_lake_is_built_from_the_airflow_connection(s3_lake_url: str, s3_server: S3Server) -> None:
    from s3fs import S3FileSystem

    lake = s3_lake()
    assert lake.url == s3_lake_url
    assert lake.protocol == "s3"
    assert isinstance(lake.fs, S3FileSystem)
    # The endpoint and credentials come from the connection, not from ambient AWS settings.
    assert lake.fs.endpoint_url == s3_server.endpoint
    assert lake.fs.anon is False
    credentials = asyncio.run(lake.fs.session.get_credentials())
    assert (credentials.access_key, credentials.secret_key) == (ACCESS_KEY, SECRET_KEY)
    assert lake.uri(KEY) == f"{s3_lake_url}/{KEY}"


def test_an_undefined_connection_is_an_error(
    s3_lake_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowNotFoundException

    from dslc.settings import get_settings

    monkeypatch.setenv("DSLC_LAKE_CONN_ID", "no_such_conn")
    get_settings.cache_clear()
    # Not a silent fallback to anonymous access against AWS itself.
    with pytest.raises(AirflowNotFoundException) as err:
        s3_lake()
    assert str(err.value).startswith(
        "DSLC_LAKE_CONN_ID='no_such_conn' names no Airflow connection, so the lake "
        f"{s3_lake_url} has no credentials."
    )


def test_publish_read_move_delete_round_trip(s3_lake_url: str, s3_server: S3Server) -> None:
    lake = s3_lake()
    root = prefix_of(s3_lake_url, s3_server)

    first = lake.publish(KEY, frame())
    assert lake.manifest(KEY) == first
    pd.testing.assert_frame_equal(lake.read_partition(KEY), frame())
    assert s3_server.keys(f"{root}/raw/") == [
        f"{root}/{KEY}/{MANIFEST}",
        f"{root}/{KEY}/{first.files[0]}",
    ]

    # Other data replaces the partition and the stale object goes.
    second = lake.publish(KEY, frame(5, offset=100))
    assert second.files != first.files
    assert s3_server.keys(f"{root}/raw/") == [
        f"{root}/{KEY}/{MANIFEST}",
        f"{root}/{KEY}/{second.files[0]}",
    ]
    pd.testing.assert_frame_equal(lake.read_partition(KEY), frame(5, offset=100))

    # Data without a manifest is not published, and the error names the S3 location.
    unpublished = "raw/flights/ds=2013-01-03"
    lake.write_bytes(parquet_bytes(frame()), unpublished, "part-0.parquet")
    lake.write_bytes(parquet_bytes(frame(4)), KEY, "part-stray.parquet")
    assert lake.published_days("raw", "flights") == ["2013-01-02"]
    pd.testing.assert_frame_equal(lake.read_partition(KEY), frame(5, offset=100))
    with pytest.raises(PartitionNotFoundError, match=f"{s3_lake_url}/{unpublished}$"):
        lake.read_partition(unpublished)

    # move: everything under the prefix, then the source is gone.
    landing, quarantine = "landing/flights/ds=2013-01-02", "quarantine/flights/ds=2013-01-02"
    lake.write_bytes(b"a,b\n1,2\n", landing, "flights.csv")
    lake.write_text("{}", landing, "notes.json")
    lake.move(landing, quarantine)
    assert not lake.exists(landing)
    assert s3_server.keys(f"{root}/landing/") == []
    assert lake.ls(quarantine) == ["flights.csv", "notes.json"]
    assert lake.read_bytes(quarantine, "flights.csv") == b"a,b\n1,2\n"

    # delete: the whole prefix, on the server too.
    lake.delete(KEY)
    assert lake.manifest(KEY) is None
    assert s3_server.keys(f"{root}/{KEY}/") == []
    assert lake.published_days("raw", "flights") == []


def test_publish_is_idempotent_and_byte_identical_to_a_file_lake(
    s3_lake_url: str, s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = s3_lake()
    first = lake.publish(KEY, frame())

    writes: list[tuple[str, ...]] = []
    real_write_bytes = lake.write_bytes

    def counting_write_bytes(data: bytes, *parts: str) -> None:
        writes.append(parts)
        real_write_bytes(data, *parts)

    monkeypatch.setattr(lake, "write_bytes", counting_write_bytes)
    again = lake.publish(KEY, frame())
    assert again == first
    assert writes == [(KEY, MANIFEST)]  # the data object is not rewritten
    root = prefix_of(s3_lake_url, s3_server)
    assert s3_server.keys(f"{root}/{KEY}/") == [
        f"{root}/{KEY}/{MANIFEST}",
        f"{root}/{KEY}/{first.files[0]}",
    ]

    local = Lake(f"file://{tmp_path / 'lake'}")
    on_file = local.publish(KEY, frame())
    assert on_file == first  # same name, rows, columns and content hash
    assert lake.read_bytes(KEY, first.files[0]) == local.read_bytes(KEY, on_file.files[0])
    assert lake.read_text(KEY, MANIFEST) == local.read_text(KEY, MANIFEST)


def run_day(lake: Lake, ds: str) -> tuple[dict, dict]:  # type: ignore[type-arg]
    day = dt.date.fromisoformat(ds)
    sources.replay(lake, day, day)
    ingest.extract_day(lake, ds)
    raw = ingest.validate_day(lake, ds)
    features = ingest.build_features(lake, ds)
    return raw, features


def test_pipeline_on_s3_publishes_the_same_features_as_on_file(
    s3_lake_url: str, s3_server: S3Server, tmp_path: Path
) -> None:
    ds = "2013-01-02"
    s3_raw, s3_features = run_day(s3_lake(), ds)
    file_raw, file_features = run_day(Lake(f"file://{tmp_path / 'lake'}"), ds)

    assert s3_features["uri"] == f"{s3_lake_url}/features/flights/ds={ds}"
    assert s3_features["rows"] > 0
    assert s3_features["secondary"] == {"weather": True}
    assert s3_features["content_hash"] == file_features["content_hash"]
    assert {k: v for k, v in s3_features.items() if k != "uri"} == {
        k: v for k, v in file_features.items() if k != "uri"
    }
    for dataset in ("flights", "weather"):
        assert s3_raw[dataset]["content_hash"] == file_raw[dataset]["content_hash"]

    root = prefix_of(s3_lake_url, s3_server)
    keys = s3_server.keys(f"{root}/")
    assert f"{root}/features/flights/ds={ds}/{MANIFEST}" in keys
    assert f"{root}/validation/flights/ds={ds}/result.json" in keys
    assert not [k for k in keys if "/staging/" in k]  # staging is dropped once published
    assert not [k for k in keys if "/quarantine/" in k]
