"""Test-wide setup: an isolated AIRFLOW_HOME and DSLC_HOME per session, set before Airflow loads.

Nothing here starts a service; fixtures that need Airflow's metadata DB or a real stack live in
the conftest of their folder.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="dslc-tests-"))
atexit.register(shutil.rmtree, _SESSION_DIR, ignore_errors=True)

os.environ.setdefault("AIRFLOW_HOME", str(_SESSION_DIR / "airflow"))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
os.environ["DSLC_HOME"] = str(_SESSION_DIR / "dslc")
os.environ.pop("DSLC_LAKE_URL", None)
# No test reaches a serving API it did not start (the default, 127.0.0.1:8000, may be a
# developer's demo): port 9 (discard) refuses connections. Tests that start one override it.
os.environ["DSLC_SERVING_URL"] = "http://127.0.0.1:9"
# Airflow puts plugins/ on sys.path for DAGs; do the same for tests that import the sensors.
sys.path.insert(0, str(ROOT / "plugins"))

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_settings() -> None:
    """Each test reads settings anew, so monkeypatched DSLC_* variables take effect."""
    from dslc.settings import get_settings

    get_settings.cache_clear()


@pytest.fixture
def lake(tmp_path: Path):
    """An empty file:// lake in a temp dir, also set as DSLC_LAKE_URL for code under test."""
    from dslc.lake import Lake

    url = f"file://{tmp_path / 'lake'}"
    old = os.environ.get("DSLC_LAKE_URL")
    os.environ["DSLC_LAKE_URL"] = url
    from dslc.settings import get_settings

    get_settings.cache_clear()
    yield Lake(url)
    if old is None:
        os.environ.pop("DSLC_LAKE_URL", None)
    else:
        os.environ["DSLC_LAKE_URL"] = old
    get_settings.cache_clear()
