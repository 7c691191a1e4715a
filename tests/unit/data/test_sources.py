"""The replayer lands the source's own text, day by day, idempotently."""

from __future__ import annotations

import datetime as dt

import pytest

from dslc.data import sources
from dslc.lake import Lake


def test_replay_lands_each_day_as_the_source_sent_it(lake: Lake) -> None:
    landed = sources.replay(lake, dt.date(2013, 1, 1), dt.date(2013, 1, 2))
    assert landed == {"weather": 2, "flights": 2}
    text = lake.read_text("landing/flights/ds=2013-01-01", "flights.csv")
    lines = text.splitlines()
    assert lines[0].startswith("year,month,day,dep_time")
    assert (
        lines[1]
        == "2013,1,1,517,515,2,830,819,11,UA,1545,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z"
    )
    assert len(lines) - 1 == 842  # flights on 2013-01-01
    weather = lake.read_text("landing/weather/ds=2013-01-01", "weather.csv")
    assert ",NA," in weather  # missing values stay as the source writes them


def test_replay_is_idempotent(lake: Lake) -> None:
    sources.replay(lake, dt.date(2013, 3, 5), dt.date(2013, 3, 5))
    first = lake.read_bytes("landing/flights/ds=2013-03-05", "flights.csv")
    sources.replay(lake, dt.date(2013, 3, 5), dt.date(2013, 3, 5))
    assert lake.read_bytes("landing/flights/ds=2013-03-05", "flights.csv") == first
    assert lake.ls("landing/flights/ds=2013-03-05") == ["flights.csv"]


def test_day_without_weather_lands_flights_only(lake: Lake) -> None:
    landed = sources.replay(lake, dt.date(2013, 12, 31), dt.date(2013, 12, 31))
    assert landed == {"weather": 0, "flights": 1}


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        (dt.date(2012, 12, 31), dt.date(2013, 1, 1), "outside"),
        (dt.date(2013, 2, 1), dt.date(2013, 1, 1), "empty"),
    ],
)
def test_replay_rejects_days_outside_the_data(lake: Lake, first, last, message) -> None:
    with pytest.raises(ValueError, match=message):
        sources.replay(lake, first, last)
