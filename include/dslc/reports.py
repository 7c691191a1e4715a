"""The lake's reports as the Airflow UI serves them: which keys are reports, and their URLs.

A report is one of a closed set of files in a day partition of a report folder:

    monitoring/drift/ds=YYYY-MM-DD/{report.html,report.json,decision.json}   (drift_monitor)
    validation/<dataset>/ds=YYYY-MM-DD/{index.html,result.json}              (ingest)
    quarantine/<dataset>/ds=YYYY-MM-DD/{result.html,result.json}             (ingest)

Anything else (``..``, an encoded separator or dot, an absolute path, another file, a symlink
that leads out of its partition) is not a report: :func:`parse` refuses it by what it is, not
by what it is not, so no encoding trick reaches the lake. The key names the DAG whose runs wrote
it: the UI serves a report only to a user who may read that DAG.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import quote

from dslc.errors import UserError
from dslc.lake import day

if TYPE_CHECKING:
    from dslc.lake import Lake

DRIFT_ZONE = "monitoring/drift"
# The lake's layout in this module's terms (dslc.monitoring.monitor and dslc.data.ingest write
# them; a unit test pins the two to each other, a root module imports no stage).
_DATE = r"\d{4}-\d{2}-\d{2}"
_DATASET = r"[a-z][a-z0-9_]{0,63}"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            rf"(?P<dir>{DRIFT_ZONE}/ds=(?P<ds>{_DATE}))/(report\.html|report\.json|decision\.json)"
        ),
        "drift_monitor",
    ),
    (
        re.compile(
            rf"(?P<dir>validation/{_DATASET}/ds=(?P<ds>{_DATE}))/(index\.html|result\.json)"
        ),
        "ingest",
    ),
    (
        re.compile(
            rf"(?P<dir>quarantine/{_DATASET}/ds=(?P<ds>{_DATE}))/(result\.html|result\.json)"
        ),
        "ingest",
    ),
)
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json"}
ROUTE = "/dslc/reports"
"""Where the Airflow plugin serves reports, under Airflow's own address."""


class ReportPathError(UserError):
    """A requested key is not one of the lake's reports."""


@dataclass(frozen=True)
class Report:
    """A key the UI may serve: the file, its partition folder and the DAG that wrote it."""

    key: str
    folder: str
    dag_id: str

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[PurePosixPath(self.key).suffix]


def parse(key: str) -> Report:
    """The report at ``key`` (relative to the lake root), or :class:`ReportPathError`."""
    for pattern, dag_id in _PATTERNS:
        m = pattern.fullmatch(key)
        if m is not None:
            try:
                day(m["ds"])  # a real date, not 2013-13-45
            except UserError:
                break
            return Report(key=key, folder=m["dir"], dag_id=dag_id)
    raise ReportPathError(
        f"{key[:200]!r} is not a report: the UI serves only drift reports "
        f"({DRIFT_ZONE}/ds=YYYY-MM-DD/report.html) and validation results "
        "(validation/<dataset>/ds=YYYY-MM-DD/index.html, quarantine/.../result.html)"
    )


def read(lake: Lake, report: Report) -> bytes:
    """The report's bytes; :class:`ReportPathError` if a local lake's file is reached through a
    symlink below the lake root, :class:`FileNotFoundError` if it is not there."""
    if lake.protocol == "file":
        # Resolved, the file must be where its key says: a link anywhere on the way (the
        # file, its partition, its zone) could lead anywhere. The root itself may be a link.
        target = os.path.realpath(lake.path(report.key))
        if target != str(Path(os.path.realpath(lake.path())) / report.key):
            raise ReportPathError(
                f"{report.key!r} leads out of {report.folder}/ through a symlink: not served"
            )
        if not Path(target).is_file():
            raise FileNotFoundError(lake.uri(report.key))
    return lake.read_bytes(report.key)


def drift_report_key(ds: str) -> str:
    return f"{DRIFT_ZONE}/ds={day(ds)}/report.html"


def validation_key(dataset: str, ds: str) -> str:
    return f"validation/{dataset}/ds={day(ds)}/index.html"


def url(airflow_url: str, key: str) -> str:
    """The report's address inside Airflow (checked: only a report has one)."""
    return f"{airflow_url.rstrip('/')}{ROUTE}/{quote(parse(key).key, safe='/=')}"


def mlflow_run_url(mlflow_url: str, run_id: str) -> str:
    """MLflow's page of a run (its UI finds the experiment from the run)."""
    return f"{mlflow_url.rstrip('/')}/#/runs/{quote(run_id, safe='')}"


def model_version_url(mlflow_url: str, name: str, version: str | int) -> str:
    """MLflow's page of a registered model version."""
    return (
        f"{mlflow_url.rstrip('/')}/#/models/{quote(name, safe='')}"
        f"/versions/{quote(str(version), safe='')}"
    )
