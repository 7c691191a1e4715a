"""A second use case, defined only here: will a machine fail within the hour of a reading?

Synthetic and small: four machines report temperature and vibration every few minutes. From
``SHIFT_DAY`` on, a hot spell and worn bearings move both distributions far from anything seen
before, and failures follow vibration harder. Nothing in ``dslc`` names this module: the tests
select it with ``DSLC_USECASE=tests.usecases.sensors``, exactly as a team selects its own.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dslc.usecase import Column, Dataset, FeatureField, FeatureSpec, ModelSpec, Slice, UseCase
from dslc.usecases.tabular import GRADIENT_BOOSTING_TRUSTED_TYPES, gradient_boosting

if TYPE_CHECKING:
    import pandas as pd

FIRST_DAY = dt.date(2024, 1, 1)
LAST_DAY = dt.date(2024, 2, 29)
SHIFT_DAY = dt.date(2024, 1, 15)
ROWS_PER_DAY = 800
MACHINES = ("M1", "M2", "M3", "M4")

READINGS = Dataset(
    name="readings",
    description="One row per sensor reading.",
    key=("year", "month", "day", "machine", "reading"),
    max_rows_per_day=5_000,
    columns=(
        Column("year", "int", min=2000, max=2100),
        Column("month", "int", min=1, max=12),
        Column("day", "int", min=1, max=31),
        Column("hour", "int", min=0, max=23),
        Column("machine", "str", allowed=frozenset(MACHINES)),
        Column("reading", "int", min=1, max=99_999),
        Column("temperature", "float", min=-50, max=200),
        Column("vibration", "float", min=0, max=20),
        Column("failed", "int", min=0, max=1),
    ),
)

FEATURES = FeatureSpec(
    key=("ds", "machine", "reading"),
    event_time="ts",
    categorical=("machine",),
    numeric=("hour", "temperature", "vibration"),
    label="failure",
    leaky=frozenset({"failed"}),
)


def day_frame(day: dt.date) -> pd.DataFrame:
    """The day's readings (deterministic per day); shifted from ``SHIFT_DAY`` on."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(day.toordinal())
    n = ROWS_PER_DAY
    shifted = day >= SHIFT_DAY
    machine = rng.choice(len(MACHINES), size=n)
    temperature = rng.normal(85.0 if shifted else 60.0, 5.0, n)
    vibration = np.abs(rng.normal(2.5 if shifted else 1.0, 0.3, n))
    if shifted:  # failures now follow vibration harder, and machine M4 got new bearings
        logit = -1.5 + 0.15 * (temperature - 85.0) + 4.0 * (vibration - 2.5)
        logit += np.array([0.0, 0.5, -0.5, -1.0])[machine]
    else:
        logit = -2.0 + 0.15 * (temperature - 60.0) + 2.5 * (vibration - 1.0)
        logit += np.array([0.0, 0.5, -0.5, 1.0])[machine]
    failed = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")
    return pd.DataFrame(
        {
            "year": day.year,
            "month": day.month,
            "day": day.day,
            "hour": rng.integers(0, 24, n),
            "machine": np.array(MACHINES)[machine],
            "reading": np.arange(1, n + 1),
            "temperature": temperature.round(2),
            "vibration": vibration.round(3),
            "failed": failed,
        }
    )


class SyntheticSource:
    """The upstream system: every day of ``FIRST_DAY..LAST_DAY``, generated on request."""

    first_day = FIRST_DAY
    last_day = LAST_DAY

    def day_csv(self, dataset: str, day: dt.date) -> bytes | None:
        assert dataset == READINGS.name, dataset
        buf = io.StringIO()
        day_frame(day).to_csv(buf, index=False, lineterminator="\n")
        return buf.getvalue().encode()


def build_features(frames: Mapping[str, pd.DataFrame | None], ds: str) -> pd.DataFrame:
    """One row per reading: the machine, the hour and the sensors; the label is ``failed``."""
    import pandas as pd

    r = frames["readings"]
    assert r is not None
    day = pd.to_datetime(pd.DataFrame({"year": r["year"], "month": r["month"], "day": r["day"]}))
    return pd.DataFrame(
        {
            "ds": ds,
            "machine": r["machine"].astype("str"),
            "reading": r["reading"].astype("int64"),
            "ts": (day + pd.to_timedelta(r["hour"], unit="h")).astype("datetime64[us]"),
            "hour": r["hour"].astype("float64"),
            "temperature": r["temperature"].astype("float64"),
            "vibration": r["vibration"].astype("float64"),
            "failure": r["failed"].astype("int8"),
        }
    )


def build_pipeline(params: Mapping[str, Any]) -> Any:
    return gradient_boosting(FEATURES.categorical, FEATURES.numeric, params)


USECASE = UseCase(
    name="sensors",
    description="Will a machine fail within the hour of a reading?",
    datasets=(READINGS,),
    features=FEATURES,
    build_features=build_features,
    model=ModelSpec(
        categorical=FEATURES.categorical,
        numeric=FEATURES.numeric,
        build_pipeline=build_pipeline,
        trusted_types=GRADIENT_BOOSTING_TRUSTED_TYPES,
        description="Machine failure within the hour (a test use case).",
    ),
    model_name="sensors_failure",
    source=SyntheticSource(),
    serving_fields=(
        FeatureField("machine", "str", example="M1"),
        FeatureField("hour", "float", min=0, max=23, integral=True),
        FeatureField("temperature", "float", min=-50, max=200),
        FeatureField("vibration", "float", min=0, max=20),
    ),
    log_key=FeatureField("reading", "float", nullable=True, min=1, max=99_999, integral=True),
    slices=(Slice("machine"),),
)
