"""`dslc replay`: land days of the use case's source with a progress bar."""

from __future__ import annotations

import datetime as dt


def replay_cli(first: dt.date, last: dt.date, dataset: str | None = None) -> None:
    """Land the days; the primary dataset (the default) brings its secondary ones."""
    from rich.progress import Progress

    from dslc.data.sources import replay, replay_order
    from dslc.lake import get_lake
    from dslc.settings import get_usecase

    usecase = get_usecase()
    lake = get_lake()
    if dataset is None or dataset == usecase.primary.name:
        datasets = replay_order(usecase)
    else:
        datasets = (usecase.dataset(dataset).name,)
    total = (last - first).days + 1
    with Progress() as progress:
        bar = progress.add_task(f"landing {', '.join(datasets)} into {lake.url}", total=total)
        landed = replay(lake, first, last, datasets, on_day=lambda _d, _s: progress.advance(bar))
    summary = ", ".join(f"{n} {name} files" for name, n in landed.items())
    print(f"landed {summary} for {first}..{last} under {lake.uri('landing')}")
