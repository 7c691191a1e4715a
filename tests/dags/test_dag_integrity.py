"""Every file in dags/ parses cleanly and cheaply, the way Airflow's own example-DAG tests check.

Each file is parsed by ``DagBag`` in a fresh interpreter (clean ``sys.modules``) set up so that
parse-time I/O *fails* rather than being patched away:

* the configured secrets backend (``[secrets] backend``, which Airflow 3.3 consults first for
  both ``airflow.sdk`` and ``airflow.models`` lookups, in and outside task contexts) records the
  lookup and raises ``AirflowSecretsBackendAccessDenied``, the one error Airflow re-raises
  instead of falling through to the next backend (env vars, metastore);
* the metadata DB URL points into a directory that does not exist, so any query at parse
  time is an import error.

The negative controls at the bottom parse small DAG files that do each of the forbidden things
and check that the same harness catches them, so these tests can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (ROOT / "dags").glob("*.py") if p.name != "__init__.py")

# Ours to keep out of parsing. Airflow 3.3 itself loads none of these while importing
# airflow.sdk and parsing a no-op DAG (test_airflow_itself_loads_no_heavy_module checks it);
# it does load fsspec, sqlalchemy, pydantic and boto3, so those are not in the list.
HEAVY_MODULES = (
    "pandas",
    "numpy",
    "sklearn",
    "mlflow",
    "great_expectations",
    "scipy",
    "pyarrow",
)

# Runs in the child interpreter via ``python -c``. The backend class lives in ``__main__`` and is
# defined before Airflow is imported, because ``import airflow`` instantiates the backend.
_CHILD = r"""
import json, sys

LOOKUPS = []


def _deny(what):
    LOOKUPS.append(what)
    from airflow.sdk.exceptions import AirflowSecretsBackendAccessDenied

    raise AirflowSecretsBackendAccessDenied(f"{what} looked up while parsing a DAG file")


class DenyingSecretsBackend:
    def _set_connection_class(self, connection_class):
        pass

    def get_connection(self, conn_id, team_name=None):
        _deny(f"connection {conn_id!r}")

    def get_conn_value(self, conn_id, team_name=None):
        _deny(f"connection {conn_id!r}")

    def get_variable(self, key, team_name=None):
        _deny(f"variable {key!r}")

    def get_config(self, key):
        return None


out_path, heavy = sys.argv[1], json.loads(sys.argv[2])

from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import BaseSensorOperator

reports = []
for path in sys.argv[3:]:
    del LOOKUPS[:]
    bag = DagBag(path)
    dags = []
    for dag in bag.dags.values():
        dags.append({
            "dag_id": dag.dag_id,
            "tags": sorted(dag.tags or []),
            "doc_md": dag.doc_md or "",
            "catchup": bool(dag.catchup),
            "default_args": {k: repr(v) for k, v in (dag.default_args or {}).items()},
            "default_retries": (dag.default_args or {}).get("retries"),
            "tasks": [
                {
                    "task_id": t.task_id,
                    "owner": t.owner,
                    "retries": t.retries,
                    "pool": t.pool,
                    "sensor": isinstance(t, BaseSensorOperator),
                }
                for t in dag.tasks
            ],
        })
    reports.append({
        "path": path,
        "errors": dict(bag.import_errors),
        "lookups": list(LOOKUPS),
        "heavy": sorted(m for m in heavy if m in sys.modules),
        "dags": dags,
    })
with open(out_path, "w") as fh:
    json.dump(reports, fh)
"""


def _parse(paths: list[Path], work: Path) -> list[dict[str, Any]]:
    """Parse ``paths`` one after another in a fresh interpreter; one report per file."""
    out = work / f"report-{paths[0].stem}.json"
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW__SECRETS__BACKEND": "__main__.DenyingSecretsBackend",
            "AIRFLOW__SECRETS__USE_CACHE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{work}/no-such-dir/airflow.db",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        }
    )
    env.pop("_AIRFLOW_PROCESS_CONTEXT", None)
    cmd = [sys.executable, "-c", _CHILD, str(out), json.dumps(HEAVY_MODULES), *map(str, paths)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and out.exists(), (
        f"parsing {[p.name for p in paths]} crashed (exit {proc.returncode}):\n"
        f"{proc.stderr[-4000:]}\n{proc.stdout[-2000:]}"
    )
    reports: list[dict[str, Any]] = json.loads(out.read_text())
    return reports


_NOOP_DAG = '''
"""A no-op DAG that breaks every house convention: the baseline and the conventions' control."""
import datetime as dt

from airflow.sdk import dag, task


@dag(schedule="@daily", start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC), catchup=True)
def noop():
    @task
    def nothing():
        return None

    nothing()


noop()
'''

# Each does one forbidden thing at top level, the way it slips into real DAG files.
_CONTROLS = {
    "variable_get": """
from airflow.sdk import Variable
THRESHOLD = Variable.get("threshold", default="0.5")
""",
    "connection_swallowed": """
from airflow.sdk import BaseHook
try:
    CONN = BaseHook.get_connection("lake_s3")
except Exception:
    CONN = None
""",
    "models_variable": """
from airflow.models import Variable
THRESHOLD = Variable.get("threshold", default_var="0.5")
""",
    "db_query": """
from sqlalchemy import text
from airflow import settings
settings.Session().execute(text("select 1"))
""",
    "heavy_import": """
import pandas
""",
}


def _control_source(name: str, body: str) -> str:
    return (
        "import datetime as dt\n"
        "from airflow.sdk import dag, task\n"
        f"{textwrap.dedent(body)}\n"
        f"@dag(dag_id={name!r}, schedule=None, "
        "start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))\n"
        "def control():\n"
        "    @task\n"
        "    def nothing():\n"
        "        return None\n\n"
        "    nothing()\n\n\n"
        "control()\n"
    )


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Reports for every DAG file, the no-op baseline and the controls, parsed in parallel."""
    work = tmp_path_factory.mktemp("dag-integrity")
    noop = work / "noop_baseline.py"
    noop.write_text(_NOOP_DAG)
    controls = []
    for name, body in _CONTROLS.items():
        path = work / f"{name}.py"
        path.write_text(_control_source(name, body))
        controls.append(path)
    # One interpreter per real DAG file and for the baseline (clean sys.modules each); the
    # controls share one, heavy_import last so it cannot taint the others' module lists.
    jobs = [[p] for p in DAG_FILES] + [[noop], controls]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = pool.map(lambda paths: _parse(paths, work), jobs)
        return {Path(r["path"]).name: r for batch in results for r in batch}


def convention_problems(report: dict[str, Any]) -> list[str]:
    """What a parsed DAG file breaks of the house conventions (empty: nothing)."""
    problems = []
    for dag in report["dags"]:
        name = dag["dag_id"]
        if not dag["tags"]:
            problems.append(f"{name}: no tags")
        if not dag["doc_md"].strip():
            problems.append(f"{name}: no doc_md")
        if dag["catchup"]:
            problems.append(f"{name}: catchup=True")
        retries = dag["default_retries"]
        if not isinstance(retries, int) or retries < 1:
            problems.append(f"{name}: default_args retries is {retries!r}, want >= 1")
        for t in dag["tasks"]:
            if t["owner"] in (None, "", "airflow"):
                problems.append(f"{name}.{t['task_id']}: owner is the default {t['owner']!r}")
            if not t["sensor"] and t["retries"] < 1:
                problems.append(f"{name}.{t['task_id']}: retries={t['retries']} (not a sensor)")
    return problems


def test_dags_folder_has_dag_files() -> None:
    assert DAG_FILES, f"no DAG files found in {ROOT / 'dags'}"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_parses_without_import_errors(parsed: dict[str, dict[str, Any]], dag_file: Path) -> None:
    report = parsed[dag_file.name]
    assert not report["errors"], "\n".join(report["errors"].values())
    assert report["dags"], f"{dag_file.name} defines no DAG"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_parsing_loads_no_heavy_module(parsed: dict[str, dict[str, Any]], dag_file: Path) -> None:
    heavy = parsed[dag_file.name]["heavy"]
    assert not heavy, f"parsing {dag_file.name} imported {heavy}: import them inside tasks"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_parsing_looks_up_no_connection_or_variable(
    parsed: dict[str, dict[str, Any]], dag_file: Path
) -> None:
    lookups = parsed[dag_file.name]["lookups"]
    assert not lookups, (
        f"parsing {dag_file.name} looked up {lookups}: do it inside a task or a template"
    )


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_follows_conventions(parsed: dict[str, dict[str, Any]], dag_file: Path) -> None:
    problems = convention_problems(parsed[dag_file.name])
    assert not problems, "\n".join(problems)


def test_dag_ids_are_unique(parsed: dict[str, dict[str, Any]]) -> None:
    seen: dict[str, str] = {}
    for dag_file in DAG_FILES:
        for dag in parsed[dag_file.name]["dags"]:
            other = seen.setdefault(dag["dag_id"], dag_file.name)
            assert other == dag_file.name, f"dag_id {dag['dag_id']!r} in {other} and {dag_file}"


# Tasks that move the champion alias or what is served (or repair a deploy that died): they
# share the 1-slot pool, so no two of them interleave.
CHAMPION_TASKS = {
    ("train", "promote"),
    ("train", "deploy"),
    ("deploy", "deploy"),
    ("drift_monitor", "reconcile_deployment"),
}


def pools(parsed: dict[str, dict[str, Any]], files: list[str]) -> dict[tuple[str, str], str]:
    return {
        (dag["dag_id"], t["task_id"]): t["pool"]
        for name in files
        for dag in parsed[name]["dags"]
        for t in dag["tasks"]
    }


def test_promotions_and_deploys_share_the_one_slot_pool(parsed: dict[str, dict[str, Any]]) -> None:
    from dslc.model.registry import PROMOTE_POOL

    by_task = pools(parsed, [p.name for p in DAG_FILES])
    in_pool = {task for task, pool in by_task.items() if pool == PROMOTE_POOL}
    assert in_pool == CHAMPION_TASKS, f"in {PROMOTE_POOL}: {sorted(in_pool)}"


# -- the harness itself: what it must catch -------------------------------------------------------


def test_the_pool_check_reads_each_tasks_pool(parsed: dict[str, dict[str, Any]]) -> None:
    """A task left in Airflow's default pool shows as such (so the pool test can fail)."""
    assert set(pools(parsed, ["noop_baseline.py"]).values()) == {"default_pool"}


def test_airflow_itself_loads_no_heavy_module(parsed: dict[str, dict[str, Any]]) -> None:
    """The heavy list is ours to avoid: a no-op DAG parses without any of it."""
    report = parsed["noop_baseline.py"]
    assert not report["errors"]
    assert report["heavy"] == []
    assert report["lookups"] == []


def test_conventions_check_catches_a_careless_dag(parsed: dict[str, dict[str, Any]]) -> None:
    problems = convention_problems(parsed["noop_baseline.py"])
    assert problems == [
        "noop: no tags",
        "noop: no doc_md",
        "noop: catchup=True",
        "noop: default_args retries is None, want >= 1",
        "noop.nothing: owner is the default 'airflow'",
        "noop.nothing: retries=0 (not a sensor)",
    ]


@pytest.mark.parametrize("name", ["variable_get", "models_variable"])
def test_top_level_variable_get_fails_the_parse(
    parsed: dict[str, dict[str, Any]], name: str
) -> None:
    """Even with a default, a top-level Variable.get is an import error, not a silent default."""
    report = parsed[f"{name}.py"]
    assert report["lookups"] == ["variable 'threshold'"]
    assert not report["dags"]
    (error,) = report["errors"].values()
    assert "variable 'threshold' looked up while parsing a DAG file" in error


def test_swallowed_connection_lookup_is_still_recorded(parsed: dict[str, dict[str, Any]]) -> None:
    report = parsed["connection_swallowed.py"]
    assert report["dags"] and not report["errors"]
    assert report["lookups"] == ["connection 'lake_s3'"]


def test_top_level_db_query_fails_the_parse(parsed: dict[str, dict[str, Any]]) -> None:
    report = parsed["db_query.py"]
    assert not report["dags"]
    (error,) = report["errors"].values()
    assert "unable to open database file" in error


def test_top_level_heavy_import_is_reported(parsed: dict[str, dict[str, Any]]) -> None:
    assert "pandas" in parsed["heavy_import.py"]["heavy"]
