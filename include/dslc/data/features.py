"""Build one day's feature table through the use case's builder, and hold it to its contract.

The builder (:attr:`dslc.usecase.UseCase.build_features`) is the use case's; what every
feature table gets is here: exactly the :class:`dslc.usecase.FeatureSpec` columns in order,
no leaky column, a 0/1 label, rows sorted by key (so the same day is the same bytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from dslc.usecase import UseCaseError

if TYPE_CHECKING:
    import pandas as pd

    from dslc.usecase import UseCase


def build(
    frames: Mapping[str, pd.DataFrame | None], ds: str, usecase: UseCase | None = None
) -> pd.DataFrame:
    """The feature rows of day ``ds`` from its raw frames (by dataset name; None if absent)."""
    if usecase is None:
        from dslc.settings import get_usecase

        usecase = get_usecase()
    spec = usecase.features
    table = usecase.build_features(frames, ds)
    missing = [c for c in spec.columns if c not in table.columns]
    if missing:
        raise UseCaseError(
            f"the {usecase.name} feature builder left out {missing} for {ds}: it must return "
            f"every FeatureSpec column ({', '.join(spec.columns)})"
        )
    out = table.loc[:, spec.columns]
    if not out[spec.label].isin([0, 1]).all():
        raise UseCaseError(f"the {usecase.name} label {spec.label!r} is not 0/1 on {ds}")
    return out.sort_values(list(spec.key), kind="stable").reset_index(drop=True)
