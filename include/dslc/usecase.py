"""What a use case is: the one boundary between the lifecycle's stages and a team's own data.

The stages (``data``, ``model``, ``serving``, ``monitoring``, ``deploy``) know nothing of any
dataset. Everything specific to one prediction problem sits in one package that builds a
:class:`UseCase`: the landed datasets (:class:`Dataset`), where the days come from
(:class:`Source`), the feature table and its label (:class:`FeatureSpec` and a builder), the
model (:class:`ModelSpec`), the evaluation slices and the demo's calendar.

``DSLC_USECASE`` selects it (default ``flights``, :mod:`dslc.usecases.flights`): a bare name is
a package under :mod:`dslc.usecases`, a dotted path any importable module; either way the
module exposes ``USECASE`` (:func:`load_usecase`; :func:`dslc.settings.get_usecase` gives the
selected one). Importing this module does no I/O and imports nothing heavy.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, Protocol

from dslc.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

Kind = Literal["int", "float", "str"]


class UseCaseError(ConfigError):
    """The selected use case cannot be loaded or is inconsistent; the message says the fix."""


@dataclass(frozen=True)
class Column:
    """One column of a landed file."""

    name: str
    kind: Kind
    required: bool = True
    """Must be present in every row (not null)."""
    allowed: frozenset[str] | None = None
    """For ``str`` columns: the only values accepted (None: any)."""
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Dataset:
    """A landed tabular source: one CSV per day under ``landing/<name>/ds=YYYY-MM-DD/``."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    """Columns that identify a row; duplicates are rejected."""
    day_columns: tuple[str, str, str] = ("year", "month", "day")
    """Columns holding the local calendar day of the event (the partition day)."""
    description: str = ""
    max_rows_per_day: int = 100_000

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


@dataclass(frozen=True)
class FeatureSpec:
    """The feature table: key, event time, features and label, in this column order."""

    key: tuple[str, ...]
    """Identifies a row; starts with ``ds``, the partition day."""
    event_time: str
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    label: str
    """A 0/1 column: the binary outcome the model predicts."""
    leaky: frozenset[str] = frozenset()
    """Source columns that give the answer away and must never reach the table."""

    @property
    def columns(self) -> list[str]:
        cols = [*self.key, self.event_time, *self.categorical, *self.numeric, self.label]
        return list(dict.fromkeys(cols))


@dataclass(frozen=True)
class FeatureField:
    """What one model input may hold at serving time (the service checks every record)."""

    name: str
    kind: Literal["str", "float"]
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    integral: bool = False
    """A number that must be whole (an hour, a minute)."""
    example: str | float | None = None
    """A plausible value, for the service's self-test and the API docs."""


@dataclass(frozen=True)
class ModelSpec:
    """The model: its inputs, how to build the (unfitted) pipeline, what skops may load."""

    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    build_pipeline: Callable[[Mapping[str, Any]], Any]
    """Hyperparameters (the `train` DAG's params) -> an unfitted scikit-learn pipeline."""
    trusted_types: tuple[str, ...]
    """Types skops must be told to trust to load the fitted pipeline (never plain pickle)."""
    description: str = ""
    """The registered model's description in MLflow."""

    @property
    def features(self) -> list[str]:
        """The model's input columns, in order."""
        return [*self.categorical, *self.numeric]


@dataclass(frozen=True)
class Slice:
    """Rows evaluated on their own: one slice per value of ``column`` (its ``top`` most
    frequent values only, when set)."""

    column: str
    top: int | None = None


class Source(Protocol):
    """The upstream system the demo plays: each day's rows of each dataset, as CSV bytes."""

    first_day: dt.date
    last_day: dt.date

    def day_csv(self, dataset: str, day: dt.date) -> bytes | None:
        """One day's CSV as the source sends it, or None when it has no rows that day."""
        ...


@dataclass(frozen=True)
class DemoCalendar:
    """The days ``make demo`` lands: the first champion's data, then the drifting months."""

    start: dt.date
    end: dt.date
    replay_start: dt.date
    replay_end: dt.date
    first_champion: Mapping[str, Any] = field(default_factory=dict)
    """Params of the first champion's `train` run (``window_end`` is set to ``end``)."""


FeatureBuilder = Callable[["Mapping[str, pd.DataFrame | None]", str], "pd.DataFrame"]
"""(raw frames of the day by dataset name, None where absent; ds) -> the day's feature rows."""


@dataclass(frozen=True)
class UseCase:
    """Everything the lifecycle needs to know about one prediction problem."""

    name: str
    description: str
    datasets: tuple[Dataset, ...]
    """The landed datasets; the first is the primary one (its file completes a day)."""
    features: FeatureSpec
    build_features: FeatureBuilder
    model: ModelSpec
    model_name: str
    """The registered model's name in MLflow (``DSLC_MODEL_NAME`` overrides it)."""
    source: Source
    serving_fields: tuple[FeatureField, ...]
    log_key: FeatureField | None = None
    """A whole-number id a client may send with each record beside the model's inputs (flights:
    the flight number); the prediction log keeps it so labels can be joined later. The
    feature key's columns must be ``ds``, model inputs, or this one."""
    slices: tuple[Slice, ...] = ()
    demo: DemoCalendar | None = None

    def __post_init__(self) -> None:
        if not self.datasets:
            raise UseCaseError(f"use case {self.name!r} lands no dataset")
        model_inputs = set(self.model.features)
        table = set(self.features.categorical) | set(self.features.numeric)
        if not model_inputs <= table:
            raise UseCaseError(
                f"use case {self.name!r}: model inputs {sorted(model_inputs - table)} are not "
                "in the feature table"
            )
        served = {f.name for f in self.serving_fields}
        if served != model_inputs:
            raise UseCaseError(
                f"use case {self.name!r}: serving_fields must describe exactly the model's "
                f"inputs; missing {sorted(model_inputs - served)}, extra "
                f"{sorted(served - model_inputs)}"
            )
        if self.features.key[:1] != ("ds",):
            raise UseCaseError(f"use case {self.name!r}: the feature key must start with 'ds'")
        self._check_log_key()
        if self.features.leaky & set(self.features.columns):
            raise UseCaseError(f"use case {self.name!r}: a leaky column is in the feature table")

    def _check_log_key(self) -> None:
        rest = [k for k in self.features.key[1:] if k not in self.model.features]
        key = self.log_key
        if key is not None and (key.kind != "float" or not key.integral):
            raise UseCaseError(f"use case {self.name!r}: log_key must be a whole number field")
        if rest and (key is None or rest != [key.name]):
            raise UseCaseError(
                f"use case {self.name!r}: the feature key column(s) {rest} are not model inputs, "
                "so a served record cannot be matched with its label later; make one of them "
                "the log_key (a whole-number id)"
            )

    @property
    def primary(self) -> Dataset:
        """The dataset whose landed file says a day is complete; features are named after it."""
        return self.datasets[0]

    @property
    def secondary(self) -> tuple[Dataset, ...]:
        return self.datasets[1:]

    def dataset(self, name: str) -> Dataset:
        """A dataset by name, with a message listing the known ones."""
        for d in self.datasets:
            if d.name == name:
                return d
        known = ", ".join(d.name for d in self.datasets)
        raise KeyError(f"use case {self.name!r} has no dataset {name!r}; known: {known}")

    def field(self, name: str) -> FeatureField:
        for f in self.serving_fields:
            if f.name == name:
                return f
        raise KeyError(f"use case {self.name!r} has no model input {name!r}")


def _module_name(name: str) -> str:
    return name if "." in name else f"dslc.usecases.{name}"


@lru_cache(maxsize=8)
def load_usecase(name: str) -> UseCase:
    """The use case ``name``: a package under ``dslc.usecases`` or a dotted module path."""
    module_name = _module_name(name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and module_name.startswith(e.name):
            raise UseCaseError(
                f"DSLC_USECASE={name!r}: no module {module_name!r}. Use a package under "
                "dslc.usecases (e.g. 'flights') or the dotted path of a module that defines "
                "USECASE"
            ) from e
        raise
    usecase = getattr(module, "USECASE", None)
    if not isinstance(usecase, UseCase):
        raise UseCaseError(
            f"DSLC_USECASE={name!r}: {module_name} must define USECASE = UseCase(...); "
            f"found {type(usecase).__name__}"
        )
    return usecase
