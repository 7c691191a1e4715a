"""One error base, two kinds: every dslc exception says whose fault it is, and tasks act on it.

``dslc_airflow.errors.no_retry_on`` fails a task without retries on a user error, and lets an
unavailable service (and anything else) through unchanged, to Airflow's retries.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest
import typer
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

import dslc
from dslc import errors
from dslc.data.ingest import IngestError
from dslc.deploy.smoke import SmokeTestError
from dslc.dev.stack import CliError
from dslc.errors import (
    ConfigError,
    DataError,
    DslcError,
    NothingToDo,
    ServiceUnavailableError,
    UserError,
)
from dslc.lake import PartitionNotFoundError
from dslc.model.registry import PromotionConflictError, RegistryUnavailableError
from dslc.monitoring.policy import Policy
from dslc.serving.batcher import NoModelError, PredictionError
from dslc.serving.predictor import ModelLayoutError
from dslc.serving.schema import SchemaError
from dslc_airflow.errors import no_retry_on

# -- the hierarchy ------------------------------------------------------------------------------


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every public exception class defined in a dslc module, by dotted name."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(dslc.__path__, "dslc."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == info.name
                and not name.startswith("_")
            ):
                found[f"{info.name}.{name}"] = obj
    return found


def _outside_the_hierarchy(classes: dict[str, type[BaseException]]) -> list[str]:
    return sorted(name for name, cls in classes.items() if not issubclass(cls, DslcError))


def test_every_dslc_exception_derives_from_dslc_error() -> None:
    classes = _exception_classes()
    assert "dslc.model.split.TrainingError" in classes  # the walk reached the stages
    assert _outside_the_hierarchy(classes) == []


def test_the_hierarchy_check_can_fail() -> None:
    class StrayError(ValueError):
        pass

    classes = {"x.StrayError": StrayError, "x.ConfigError": ConfigError}
    assert _outside_the_hierarchy(classes) == ["x.StrayError"]


def test_the_errors_module_imports_nothing_from_dslc() -> None:
    tree = ast.parse(Path(errors.__file__).read_text())
    modules = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert [m for m in modules if m.split(".")[0] == "dslc"] == []


def test_special_bases_are_kept_for_callers_that_catch_them() -> None:
    cli = CliError("the stack is not running: run `dslc up`")
    assert isinstance(cli, typer.Exit) and cli.exit_code == 1
    assert str(cli) == "the stack is not running: run `dslc up`"
    assert issubclass(PartitionNotFoundError, FileNotFoundError)
    for cls in (ConfigError, DataError, SchemaError, ModelLayoutError):
        assert issubclass(cls, ValueError), cls
    with pytest.raises(ValueError, match="persistence=0"):  # an `except ValueError` still works
        Policy(persistence=0)


# -- what a task does with each kind ------------------------------------------------------------


def test_a_user_error_fails_the_task_without_retries() -> None:
    with (
        pytest.raises(AirflowFailException, match=r"^param 'window_days'=0 must be at least 1$"),
        no_retry_on(),
    ):
        raise UserError("param 'window_days'=0 must be at least 1")


def test_nothing_to_do_skips_the_task_and_logs_why(caplog: pytest.LogCaptureFixture) -> None:
    why = "no data yet: no published feature partitions at file:///lake/features/flights"
    with (
        caplog.at_level("INFO", logger="airflow.task"),
        pytest.raises(AirflowSkipException, match=f"^{re.escape(why)}$"),
        no_retry_on(),
    ):
        raise NothingToDo(why)
    assert f"skipping: {why}" in caplog.text


def test_an_unavailable_service_is_reraised_as_is_so_airflow_retries() -> None:
    error = ServiceUnavailableError("MLflow at http://127.0.0.1:5000 is not reachable")
    with pytest.raises(ServiceUnavailableError) as info, no_retry_on():
        raise error
    assert info.value is error


def test_any_other_error_is_reraised_as_is() -> None:
    error = KeyError("report")
    with pytest.raises(KeyError) as info, no_retry_on():
        raise error
    assert info.value is error


def test_a_plain_value_error_is_not_the_users_fault() -> None:
    # The drift DAG used to fail every ValueError without retries, bugs included.
    with pytest.raises(ValueError, match="labels must be 0 or 1") as info, no_retry_on():
        raise ValueError("labels must be 0 or 1")
    assert not isinstance(info.value, AirflowFailException)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (IngestError("flights.csv ends mid-row: moved to quarantine/"), "fail"),
        (PartitionNotFoundError("no published partition at file:///lake/raw"), "fail"),
        (ConfigError("invalid drift policy persistence=0"), "fail"),
        (PromotionConflictError("another run moved champion to version 7"), "fail"),
        (SmokeTestError("POST /predict answered 500"), "fail"),
        # Both a RegistryError (user) and unavailable: the retry wins.
        (RegistryUnavailableError("MLflow at http://127.0.0.1:5000 is not reachable"), "retry"),
        (NoModelError("no model loaded"), "retry"),
        # Neither kind (a server-side failure): Airflow's retries too.
        (PredictionError("the model returned 3 probabilities for 2 rows"), "retry"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v,
)
def test_what_a_task_does_with_each_dslc_error(error: DslcError, outcome: str) -> None:
    if outcome == "fail":
        with pytest.raises(AirflowFailException, match=re.escape(str(error))), no_retry_on():
            raise error
    else:
        with pytest.raises(type(error)) as info, no_retry_on():
            raise error
        assert info.value is error
