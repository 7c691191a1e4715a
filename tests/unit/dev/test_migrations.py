"""dslc up's DB setup: ``airflow db migrate``, then the pools the DAGs name, once per Airflow
version and pool set. ``airflow`` is a stand-in script that records its arguments (the real
commands run in the e2e tests and the integration ``airflow_db`` fixture)."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path

import pytest
from rich.console import Console

from dslc.dev.stack import migrations
from dslc.model.registry import PROMOTE_POOL
from dslc.settings import get_settings

FAKE_AIRFLOW = """#!{python}
import json, pathlib, sys
home = pathlib.Path({home!r})
with (home / "calls.jsonl").open("a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["db", "migrate"]:
    (home / "airflow.db").touch()
sys.exit({exit_code})
"""


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DSLC_HOME", str(tmp_path / "home"))
    settings = get_settings()
    home = migrations.airflow_home(settings)
    home.mkdir(parents=True)
    settings.state_dir.mkdir(parents=True, exist_ok=True)

    def install(exit_code: int = 0) -> None:
        script = tmp_path / "airflow"
        script.write_text(
            FAKE_AIRFLOW.format(python=sys.executable, home=str(home), exit_code=exit_code)
        )
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setattr(migrations, "executable", lambda name: str(script))

    monkeypatch.setattr(migrations, "airflow_env", lambda s: {"PATH": "/usr/bin:/bin"})
    install()

    def calls() -> list[list[str]]:
        path = home / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    return settings, home, calls, install


def migrate(settings) -> None:
    migrations.migrate_if_needed(settings, Console(file=io.StringIO()))


def test_first_start_migrates_then_creates_the_one_slot_promote_pool(setup):
    settings, _, calls, _ = setup
    migrate(settings)
    assert [c[:4] for c in calls()] == [
        ["db", "migrate"],
        ["pools", "set", PROMOTE_POOL, "1"],
    ]
    migrate(settings)  # the marker says it is done
    assert len(calls()) == 2


def test_a_stack_migrated_before_the_pool_existed_gets_it(setup):
    settings, home, calls, _ = setup
    (home / "airflow.db").touch()
    (home / ".dslc-db-migrated").write_text(migrations._airflow_version() + "\n")
    migrate(settings)
    assert ["pools", "set", PROMOTE_POOL, "1"] in [c[:4] for c in calls()]


def test_a_failed_setup_says_which_command_failed_and_leaves_no_marker(setup):
    settings, home, _, install = setup
    install(exit_code=2)
    with pytest.raises(migrations.StackError, match=r"`airflow db migrate` failed \(exit 2\)"):
        migrate(settings)
    assert not (home / ".dslc-db-migrated").exists()
