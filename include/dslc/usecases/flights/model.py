"""The flights model: its inputs, its pipeline, and what each input may hold when served.

The serving bounds are derived from the dataset descriptions (:mod:`.datasets`), the same
place ingest validates against, so a value the pipeline would refuse at ingest is refused by
``POST /predict`` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dslc.usecase import FeatureField, ModelSpec
from dslc.usecases.flights.datasets import (
    CARRIERS,
    CATEGORICAL_FEATURES,
    DESTS,
    FLIGHTS,
    NUMERIC_FEATURES,
    ORIGINS,
    WEATHER,
    WEATHER_FEATURES,
)
from dslc.usecases.tabular import GRADIENT_BOOSTING_TRUSTED_TYPES, gradient_boosting


def build_pipeline(params: Mapping[str, Any]) -> Any:
    """Ordinal-encoded carrier, origin and dest + numerics -> gradient boosting."""
    return gradient_boosting(CATEGORICAL_FEATURES, NUMERIC_FEATURES, params)


MODEL_FEATURES = [*CATEGORICAL_FEATURES, *NUMERIC_FEATURES]
"""The model's inputs, in order."""

MODEL = ModelSpec(
    categorical=CATEGORICAL_FEATURES,
    numeric=NUMERIC_FEATURES,
    build_pipeline=build_pipeline,
    trusted_types=GRADIENT_BOOSTING_TRUSTED_TYPES,
    description="Is a NYC flight going to be late?",
)


def serving_fields() -> tuple[FeatureField, ...]:
    """What each model input may hold, from the flights and weather dataset descriptions."""
    examples = {"carrier": min(CARRIERS), "origin": min(ORIGINS), "dest": min(DESTS)}
    specs = {
        name: FeatureField(name, "str", example=examples[name]) for name in CATEGORICAL_FEATURES
    }
    dist = FLIGHTS.column("distance")
    specs["distance"] = FeatureField("distance", "float", not dist.required, dist.min, dist.max)
    for prefix, source in (("sched_dep", "sched_dep_time"), ("sched_arr", "sched_arr_time")):
        col = FLIGHTS.column(source)  # HHMM
        lo, hi = (col.min or 0) // 100, (col.max or 2359) // 100
        specs[f"{prefix}_hour"] = FeatureField(f"{prefix}_hour", "float", False, lo, hi, True)
        specs[f"{prefix}_minute"] = FeatureField(f"{prefix}_minute", "float", False, 0, 59, True)
    specs["day_of_week"] = FeatureField("day_of_week", "float", False, 0, 6, True)  # Monday = 0
    for name in WEATHER_FEATURES:
        col = WEATHER.column(name)
        specs[name] = FeatureField(name, "float", not col.required, col.min, col.max)
    return tuple(specs[name] for name in MODEL.features)
