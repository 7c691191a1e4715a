"""The flights feature builder: one day's label and the features known before departure.

Pure functions over DataFrames; the lake I/O and the checks every feature table gets (columns,
no leaky column, sorted by key) are :mod:`dslc.data.features`. See
:mod:`dslc.usecases.flights.datasets` for the label definition and the columns that must
never be features.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from dslc.usecases.flights.datasets import FEATURES, LATE_THRESHOLD_MINUTES, WEATHER_FEATURES

if TYPE_CHECKING:
    import pandas as pd

# The source's wind readings include a 1048 mph glitch; anything above is not a wind speed.
MAX_WIND_MPH = 150.0


def label(arr_delay: pd.Series) -> pd.Series:
    """1 when the arrival delay is >= 15 min or missing (cancelled/diverted), else 0."""
    late = arr_delay.isna() | (arr_delay >= LATE_THRESHOLD_MINUTES)
    return late.astype("int8")


def weather_at_origin_hour(weather: pd.DataFrame) -> pd.DataFrame:
    """One weather row per (origin, local day, local hour); the first reading wins at DST."""
    import numpy as np

    cols = ["origin", "year", "month", "day", "hour", *WEATHER_FEATURES]
    w = weather.loc[:, cols].sort_values(["origin", "year", "month", "day", "hour"], kind="stable")
    w = w.drop_duplicates(["origin", "year", "month", "day", "hour"], keep="first")
    for col in ("wind_speed", "wind_gust"):
        w[col] = w[col].where(w[col] <= MAX_WIND_MPH, np.nan)
    return w


def build(frames: Mapping[str, pd.DataFrame | None], ds: str) -> pd.DataFrame:
    """The feature rows of day ``ds`` from its raw flights and (where published) weather."""
    import numpy as np
    import pandas as pd

    f = frames["flights"]
    assert f is not None, "the primary dataset is always there"
    weather = frames.get("weather")
    dep_hour, dep_min = f["sched_dep_time"] // 100, f["sched_dep_time"] % 100
    arr_hour, arr_min = f["sched_arr_time"] // 100, f["sched_arr_time"] % 100
    sched_dep_ts = pd.to_datetime(
        pd.DataFrame({"year": f["year"], "month": f["month"], "day": f["day"]})
    ) + pd.to_timedelta(dep_hour * 60 + dep_min, unit="min")
    out = pd.DataFrame(
        {
            "ds": ds,
            "carrier": f["carrier"].astype("str"),
            "flight": f["flight"].astype("int64"),
            "origin": f["origin"].astype("str"),
            "sched_dep_ts": sched_dep_ts.astype("datetime64[us]"),
            "dest": f["dest"].astype("str"),
            "distance": f["distance"].astype("float64"),
            "sched_dep_hour": dep_hour.astype("int64"),
            "sched_dep_minute": dep_min.astype("int64"),
            "sched_arr_hour": arr_hour.astype("int64"),
            "sched_arr_minute": arr_min.astype("int64"),
            "day_of_week": sched_dep_ts.dt.dayofweek.astype("int64"),
            "year": f["year"],
            "month": f["month"],
            "day": f["day"],
            "hour": f["hour"],
            FEATURES.label: label(f["arr_delay"]),
        }
    )
    if weather is not None and not weather.empty:
        w = weather_at_origin_hour(weather)
        out = out.merge(w, on=["origin", "year", "month", "day", "hour"], how="left")
    for col in WEATHER_FEATURES:
        if col not in out:
            out[col] = np.nan
        out[col] = out[col].astype("float64")
    return out
