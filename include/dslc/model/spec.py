"""The model's side of the use case: its input columns and its unfitted pipeline.

What the model is (features, pipeline, trusted skops types) is the use case's
:class:`dslc.usecase.ModelSpec`; these helpers apply it to frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from dslc.usecase import ModelSpec


def model_spec() -> ModelSpec:
    """The selected use case's model spec."""
    from dslc.settings import get_usecase

    return get_usecase().model


def model_features() -> list[str]:
    """The model's input columns, in order."""
    return model_spec().features


def trusted_types() -> list[str]:
    """What skops may load beyond its safe set, for the selected use case's pipeline."""
    return list(model_spec().trusted_types)


def build_pipeline(params: Mapping[str, Any]) -> Any:
    """The use case's unfitted pipeline for these hyperparameters."""
    return model_spec().build_pipeline(params)


def features_of(df: pd.DataFrame, spec: ModelSpec | None = None) -> pd.DataFrame:
    """The model's input columns, in order (strings for categoricals, floats for numerics)."""
    spec = spec or model_spec()
    out = df.loc[:, spec.features].copy()
    for col in spec.numeric:
        out[col] = out[col].astype("float64")
    for col in spec.categorical:
        out[col] = out[col].astype("object")
    return out


def label_of(df: pd.DataFrame) -> Any:
    """The label column as a numpy array."""
    from dslc.settings import get_usecase

    return df[get_usecase().features.label].to_numpy()
