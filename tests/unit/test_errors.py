"""One error base, two kinds: every dslc exception says whose fault it is."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
import typer

import dslc
from dslc import errors
from dslc.dev.stack import CliError
from dslc.errors import ConfigError, DataError, DslcError
from dslc.lake import PartitionNotFoundError
from dslc.monitoring.drift import Policy
from dslc.serving.predictor import ModelLayoutError
from dslc.serving.schema import SchemaError

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
    assert "dslc.model.training.TrainingError" in classes  # the walk reached the stages
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
