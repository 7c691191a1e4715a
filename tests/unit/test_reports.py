"""Which lake keys the UI serves as reports, and the URLs the task links point at."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dslc import reports
from dslc.reports import ReportPathError

DAY = "2013-06-02"


@pytest.mark.parametrize(
    ("key", "dag_id"),
    [
        (f"monitoring/drift/ds={DAY}/report.html", "drift_monitor"),
        (f"monitoring/drift/ds={DAY}/report.json", "drift_monitor"),
        (f"monitoring/drift/ds={DAY}/decision.json", "drift_monitor"),
        (f"validation/flights/ds={DAY}/index.html", "ingest"),
        (f"validation/weather/ds={DAY}/result.json", "ingest"),
        (f"quarantine/flights/ds={DAY}/result.html", "ingest"),
    ],
)
def test_a_report_key_names_its_dag(key: str, dag_id: str) -> None:
    found = reports.parse(key)
    assert (found.key, found.dag_id) == (key, dag_id)
    assert found.folder == key.rsplit("/", 1)[0]


@pytest.mark.parametrize(
    "key",
    [
        f"monitoring/drift/ds={DAY}/../../../etc/passwd",
        f"monitoring/drift/ds={DAY}/../ds=2013-06-03/report.html",
        f"monitoring/drift/ds={DAY}/%2e%2e/%2e%2e/secret.txt",
        f"monitoring/drift/ds={DAY}/%2E%2E%2Freport.html",
        f"monitoring%2fdrift%2fds={DAY}%2freport.html",
        f"monitoring/drift/ds={DAY}/%252e%252e/report.html",
        f"monitoring/drift/ds={DAY}\\..\\report.html",
        f"/monitoring/drift/ds={DAY}/report.html",
        "/etc/passwd",
        f"file:///lake/monitoring/drift/ds={DAY}/report.html",
        f"monitoring/drift/ds={DAY}/report.html\x00.png",
        f"monitoring/drift//ds={DAY}/report.html",
        "monitoring/drift/ds=2013-13-45/report.html",
        f"monitoring/drift/ds={DAY}/_SUCCESS",
        f"features/flights/ds={DAY}/_SUCCESS",
        f"validation/../monitoring/ds={DAY}/index.html",
        f"validation/Flights/ds={DAY}/index.html",
        "",
    ],
)
def test_anything_else_is_refused(key: str) -> None:
    with pytest.raises(ReportPathError, match="is not a report: the UI serves only"):
        reports.parse(key)


def test_the_keys_are_where_the_stages_write(lake) -> None:
    from dslc.lake import Lake
    from dslc.monitoring import monitor

    assert reports.drift_report_key(DAY) == f"{monitor.report_key(DAY)}/{monitor.REPORT_HTML}"
    assert reports.validation_key("flights", DAY) == (
        f"{Lake.partition('validation', 'flights', DAY)}/index.html"
    )


def test_read_returns_the_report(lake) -> None:
    key = reports.drift_report_key(DAY)
    lake.write_text("<html>ok</html>", key)
    assert reports.read(lake, reports.parse(key)) == b"<html>ok</html>"


def test_a_missing_report_is_not_found(lake) -> None:
    with pytest.raises(FileNotFoundError):
        reports.read(lake, reports.parse(reports.drift_report_key(DAY)))


def test_a_symlink_leading_out_of_its_folder_is_refused(lake, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    key = reports.drift_report_key(DAY)
    folder = Path(lake.path(key)).parent
    folder.mkdir(parents=True)
    os.symlink(secret, folder / "report.html")
    with pytest.raises(ReportPathError, match="leads out of monitoring/drift/ds=2013-06-02/"):
        reports.read(lake, reports.parse(key))


def test_a_symlinked_folder_is_refused(lake, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "report.html").write_text("elsewhere")
    parent = Path(lake.path(reports.DRIFT_ZONE))
    parent.mkdir(parents=True)
    os.symlink(elsewhere, parent / f"ds={DAY}")
    with pytest.raises(ReportPathError, match="through a symlink"):
        reports.read(lake, reports.parse(reports.drift_report_key(DAY)))


def test_a_lake_root_behind_a_symlink_still_serves(tmp_path: Path) -> None:
    from dslc.lake import Lake

    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "lake")
    lake = Lake(f"file://{tmp_path / 'lake'}")
    lake.write_text("<html>ok</html>", reports.drift_report_key(DAY))
    assert reports.read(lake, reports.parse(reports.drift_report_key(DAY))) == b"<html>ok</html>"


def test_urls() -> None:
    assert (
        reports.url("http://127.0.0.1:8080/", reports.drift_report_key(DAY))
        == f"http://127.0.0.1:8080/dslc/reports/monitoring/drift/ds={DAY}/report.html"
    )
    with pytest.raises(ReportPathError):
        reports.url("http://a", "../etc/passwd")
    assert reports.mlflow_run_url("http://m:5000/", "abc123") == "http://m:5000/#/runs/abc123"
    assert (
        reports.model_version_url("http://m:5000", "flights_late", 3)
        == "http://m:5000/#/models/flights_late/versions/3"
    )
