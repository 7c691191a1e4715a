"""Settings read lazily from DSLC_* variables; the CLI rejects bad input with a clear message."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dslc.dev.cli import app
from dslc.settings import Settings, get_settings


def test_defaults_make_the_embedded_stack_work(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in ("DSLC_LAKE_URL", "DSLC_AIRFLOW_PORT", "DSLC_MLFLOW_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DSLC_HOME", str(tmp_path))
    s = get_settings()
    assert s.lake == f"file://{tmp_path}/lake"
    assert s.airflow_url == "http://127.0.0.1:8080"
    assert s.mlflow_url == "http://127.0.0.1:5000"


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSLC_LAKE_URL", "s3://bucket/lake/")
    monkeypatch.setenv("DSLC_AIRFLOW_PORT", "18080")
    s = Settings()
    assert s.lake == "s3://bucket/lake"
    assert s.airflow_url.endswith(":18080")


def test_unsupported_lake_url_is_rejected_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSLC_LAKE_URL", "ftp://somewhere")
    with pytest.raises(ValueError, match="use file:///abs/path or s3://bucket/prefix"):
        Settings()


def test_importing_dslc_does_no_io_and_loads_nothing_heavy() -> None:
    code = (
        "import sys, dslc, dslc.settings, dslc.lake, dslc.data.ingest, dslc.dev.cli;"
        "import dslc.usecases.flights.datasets;"
        "heavy={'pandas','sklearn','mlflow','great_expectations','scipy','pyarrow','airflow'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "--start", "2013-13-01", "--end", "2013-01-02"], "is not a date"),
        (["replay", "--start", "2013-02-01", "--end", "2013-01-02"], "is before --start"),
        (["backfill", "ingest", "--start", "x", "--end", "2013-01-02"], "is not a date"),
        (
            [
                "backfill",
                "ingest",
                "--start",
                "2013-01-01",
                "--end",
                "2013-01-02",
                "--reprocess",
                "all",
            ],
            "--reprocess must be one of",
        ),
    ],
)
def test_cli_rejects_bad_arguments(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
