"""Building blocks for tabular binary-classification use cases.

:func:`gradient_boosting` is the pipeline the serving predictor (:mod:`dslc.serving.predictor`)
knows how to compile to numpy: ordinal-encoded categoricals (native categorical splits) and
passthrough numerics into scikit-learn's HistGradientBoostingClassifier. A use case with
another pipeline brings its own builder and trusted types, and is served by sklearn itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

# What skops must be told to trust to load this pipeline, beyond its built-in safe set
# (skops.io.get_untrusted_types on a dumped pipeline; tests/unit/model/test_training.py checks it).
# Keeping skops, with an explicit list, means loading a model never runs arbitrary pickle code.
GRADIENT_BOOSTING_TRUSTED_TYPES = (
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
)


def gradient_boosting(
    categorical: Sequence[str], numeric: Sequence[str], params: Mapping[str, Any]
) -> Pipeline:
    """Ordinal-encoded categoricals (native categorical splits) + numerics -> gradient boosting.

    ``params``: learning_rate, max_iter, max_leaf_nodes, min_samples_leaf, l2_regularization,
    seed (the `train` DAG's hyperparameters).
    """
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    cat = list(categorical)
    prep = ColumnTransformer(
        [
            # Unseen categories at scoring time become missing, which the model handles.
            (
                "cat",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                    encoded_missing_value=np.nan,
                    dtype=np.float64,
                ),
                cat,
            ),
            ("num", "passthrough", list(numeric)),
        ],
        verbose_feature_names_out=False,
    )
    model = HistGradientBoostingClassifier(
        learning_rate=params["learning_rate"],
        max_iter=params["max_iter"],
        max_leaf_nodes=params["max_leaf_nodes"],
        min_samples_leaf=params["min_samples_leaf"],
        l2_regularization=params["l2_regularization"],
        categorical_features=list(range(len(cat))),
        early_stopping=False,
        random_state=params["seed"],
    )
    return Pipeline([("prep", prep), ("model", model)])
