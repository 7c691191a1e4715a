"""The replayer: plays the upstream system by landing each day's rows of the use case's
source as CSV under ``landing/<dataset>/ds=YYYY-MM-DD/``, as that system would drop them.

The rows come from the use case's :class:`dslc.usecase.Source`; the secondary datasets land
before the primary one, whose file is the signal that a day is complete.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from dslc.lake import Lake

if TYPE_CHECKING:
    from dslc.usecase import UseCase


def days(first: dt.date, last: dt.date) -> Iterator[dt.date]:
    """Every day from ``first`` to ``last`` inclusive."""
    for offset in range((last - first).days + 1):
        yield first + dt.timedelta(days=offset)


def landing_key(dataset: str, day: dt.date | str) -> str:
    return Lake.partition("landing", dataset, day)


def replay_order(usecase: UseCase) -> tuple[str, ...]:
    """Secondary datasets first, the primary last: its file completes the day."""
    return (*(d.name for d in usecase.secondary), usecase.primary.name)


def replay(
    lake: Lake,
    first: dt.date,
    last: dt.date,
    datasets: tuple[str, ...] | None = None,
    on_day: Callable[[dt.date, dict[str, int]], None] | None = None,
    usecase: UseCase | None = None,
) -> dict[str, int]:
    """Land each day in ``[first, last]``; idempotent (same bytes to the same keys).

    Returns the number of files landed per dataset. A day the source has no rows for (the
    weather of 2013-12-31) is skipped for that dataset, as the upstream system would.
    """
    if usecase is None:
        from dslc.settings import get_usecase

        usecase = get_usecase()
    source = usecase.source
    if first > last:
        raise ValueError(f"replay window is empty: {first} is after {last}")
    if first < source.first_day or last > source.last_day:
        raise ValueError(
            f"the {usecase.name} source covers {source.first_day}..{source.last_day}; "
            f"{first}..{last} is outside it"
        )
    datasets = datasets or replay_order(usecase)
    landed = dict.fromkeys(datasets, 0)
    for day in days(first, last):
        sizes: dict[str, int] = {}
        for name in datasets:
            data = source.day_csv(name, day)
            if data is None:
                continue
            lake.write_bytes(data, landing_key(name, day), f"{name}.csv")
            landed[name] += 1
            sizes[name] = len(data)
        if on_day is not None:
            on_day(day, sizes)
    return landed
