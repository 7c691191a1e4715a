"""The serving fast path: a fitted pipeline compiled to dict lookups and the model's own trees.

``pipeline.predict_proba(frame)`` costs a DataFrame, a ColumnTransformer and two
OrdinalEncoders per call, which dominates a one-row request. :func:`compile_model` reads the
fitted encoders once and folds both of them (ours, and the one HistGradientBoosting keeps for
its native categorical splits) into one ``{category: code}`` dict per categorical column;
unseen categories and missing values become NaN, exactly as the encoders make them. A call
builds one float64 array and walks the fitted trees: for more than a few rows with
scikit-learn's own tree predictor, one call per tree; for a few rows with a numpy walk of all
trees at once (:class:`_Forest`, same decisions). Either way the leaf values are added in the
order ``HistGradientBoostingClassifier._raw_predict`` adds them and the model's own loss turns
them into probabilities, so the answers are bitwise identical to the offline
``pipeline.predict_proba(features_of(df))[:, 1]`` (tests/unit/serving/test_predictor.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dslc.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    from sklearn.pipeline import Pipeline

# Below this many rows one thread is faster than starting OpenMP workers for each tree.
_SINGLE_THREAD_ROWS = 2000
# Up to this many rows the level-by-level numpy walk (_Forest) beats a call per tree.
_FOREST_ROWS = 8
# Rows per call into the trees (the per-tree outputs of a chunk are held at once).
_CHUNK_ROWS = 8192
_NAN = math.nan


class ModelLayoutError(UserError, ValueError):
    """The pipeline is not the layout :func:`compile_model` knows how to compile."""


@dataclass(frozen=True)
class _Tree:
    nodes: Any
    raw_left_cat_bitsets: Any


class _Forest:
    """All trees as flat arrays, walked level by level for every (row, tree) at once.

    For a few rows the per-tree call into scikit-learn's predictor costs more than the
    walk itself; here a walk is ``max_depth`` numpy steps. Each split becomes
    ``value <= threshold`` on an augmented matrix: a categorical split reads a column of
    0.0 (category goes left) / 1.0 (right) made once per call, and a missing value reads
    -inf when the node sends missing values left and NaN (compares False: right) when it
    does not. Leaves loop to themselves; the leaf values are summed in tree order with a
    sequential ``cumsum``, the same additions as ``_raw_predict``.
    """

    def __init__(self, trees: list[_Tree], n_features: int) -> None:
        import numpy as np

        nodes = [t.nodes for t in trees]
        offsets = np.cumsum([0] + [len(n) for n in nodes[:-1]])
        bitsets = [t.raw_left_cat_bitsets.reshape(-1, 8) for t in trees]
        bitset_offsets = np.cumsum([0] + [len(b) for b in bitsets[:-1]])
        allnodes = np.concatenate(nodes)
        total = len(allnodes)
        leaf = allnodes["is_leaf"].astype(bool)
        cat = allnodes["is_categorical"].astype(bool) & ~leaf
        tree_of = np.repeat(np.arange(len(nodes)), [len(n) for n in nodes])
        self.roots = offsets.astype(np.intp)
        self.n_trees = len(nodes)
        self.n_features = n_features
        self.depth = int(allnodes["depth"].max()) if total else 0

        # One virtual column per categorical split: 0.0 left, 1.0 right, NaN missing.
        self.cat_nodes = np.flatnonzero(cat)
        self.cat_feature = allnodes["feature_idx"][self.cat_nodes].astype(np.intp)
        table = np.ones((len(self.cat_nodes), 257), dtype=np.float64)
        table[:, 256] = np.nan
        codes = np.arange(256)
        all_bitsets = np.concatenate(bitsets) if bitsets else np.zeros((0, 8), dtype=np.uint32)
        for k, node in enumerate(self.cat_nodes):
            row = all_bitsets[bitset_offsets[tree_of[node]] + allnodes["bitset_idx"][node]]
            in_left = (row[codes >> 5] >> (codes & 31).astype(np.uint32)) & 1
            table[k, :256] = np.where(in_left == 1, 0.0, 1.0)
        self.cat_table = table.ravel()
        self.cat_base = (np.arange(len(self.cat_nodes)) * 257).astype(np.intp)
        width = n_features + len(self.cat_nodes)
        self.width = width

        col = allnodes["feature_idx"].astype(np.intp)
        col[self.cat_nodes] = n_features + np.arange(len(self.cat_nodes))
        col += np.where(allnodes["missing_go_to_left"].astype(bool), 0, width)
        thr = allnodes["num_threshold"].astype(np.float64)
        thr[self.cat_nodes] = 0.5
        left = allnodes["left"].astype(np.intp) + offsets[tree_of]
        right = allnodes["right"].astype(np.intp) + offsets[tree_of]
        self_idx = np.arange(total, dtype=np.intp)
        left[leaf], right[leaf], col[leaf], thr[leaf] = self_idx[leaf], self_idx[leaf], 0, 0.0
        self.col, self.thr = col, thr
        # Children interleaved: node i's right child at 2*i, its left child at 2*i + 1.
        self.kids = np.stack([right, left], axis=1).ravel()
        self.value = allnodes["value"].astype(np.float64)

    def raw_predict(self, X: np.ndarray, baseline: float) -> np.ndarray:
        import numpy as np

        n = X.shape[0]
        if len(self.cat_nodes):
            codes = X[:, self.cat_feature]
            codes = np.where(np.isnan(codes), 256, codes).astype(np.intp)
            virtual = self.cat_table[codes + self.cat_base]
            wide = np.concatenate([X, virtual], axis=1)
        else:
            wide = X
        # Columns [0, width): missing = -inf (goes left); [width, 2*width): NaN (goes right).
        both = np.concatenate([np.where(np.isnan(wide), -np.inf, wide), wide], axis=1).ravel()
        take = np.take
        idx = np.tile(self.roots, n)
        row_base = np.repeat(np.arange(n, dtype=np.intp) * (2 * self.width), self.n_trees)
        col, val, thr = np.empty_like(idx), np.empty(len(idx)), np.empty(len(idx))
        go_left = np.empty(len(idx), dtype=bool)
        for _ in range(self.depth):
            take(self.col, idx, out=col)
            np.add(col, row_base, out=col)
            take(both, col, out=val)
            take(self.thr, idx, out=thr)
            np.less_equal(val, thr, out=go_left)  # NaN <= t is False: right
            np.multiply(idx, 2, out=idx)
            np.add(idx, go_left, out=idx)
            take(self.kids, idx, out=idx)
        sums = np.empty((n, self.n_trees + 1), dtype=np.float64)
        sums[:, 0] = baseline
        sums[:, 1:] = take(self.value, idx).reshape(n, self.n_trees)
        raw: np.ndarray = np.cumsum(sums, axis=1)[:, -1]
        return raw


class Predictor:
    """P(late) for columns of raw feature values, equal to the fitted pipeline's answer."""

    def __init__(
        self,
        *,
        features: list[str],
        order: list[str],
        codes: dict[str, dict[Any, float]],
        trees: list[Any],
        known_cat_bitsets: Any,
        f_idx_map: Any,
        baseline: float,
        loss: Any,
    ) -> None:
        self.features = features
        self._order = order  # the column order the trees were fitted on
        self._codes = codes
        self._trees = trees
        self._baseline = baseline
        self._loss = loss
        self._forest = _Forest(trees, len(order))
        # Buffers acquired once: each call then skips most of the format checks.
        self._tree_views = [
            (memoryview(t.nodes), memoryview(t.raw_left_cat_bitsets)) for t in trees
        ]
        self._known_cat_bitsets = memoryview(known_cat_bitsets)
        self._f_idx_map = memoryview(f_idx_map)
        self.forest_rows = _FOREST_ROWS

    @property
    def n_trees(self) -> int:
        return len(self._trees)

    def known_categories(self) -> dict[str, frozenset[str]]:
        """Per categorical feature, the categories the trees tell apart; any other is missing."""
        return {name: frozenset(codes) for name, codes in self._codes.items()}

    def matrix(self, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> np.ndarray:
        """The (n, n_features) float64 array the trees read, in their fitted column order."""
        import numpy as np

        missing = [f for f in self.features if f not in columns]
        if missing:
            raise ValueError(f"columns missing for the model's features: {', '.join(missing)}")
        n = len(columns[self._order[0]])
        X = np.empty((n, len(self._order)), dtype=np.float64)
        for j, name in enumerate(self._order):
            values = columns[name]
            if len(values) != n:
                raise ValueError(
                    f"column {name!r} has {len(values)} values, {self._order[0]!r} has {n}: "
                    "every column needs one value per row"
                )
            codes = self._codes.get(name)
            if codes is None:
                X[:, j] = np.asarray(values, dtype=np.float64)
                continue
            get = codes.get
            try:
                X[:, j] = [get(v, _NAN) for v in values]
            except TypeError:
                bad = next(v for v in values if not _hashable(v))
                raise ValueError(
                    f"column {name!r} holds {type(bad).__name__} {bad!r}; categories are "
                    "strings or None"
                ) from None
        return X

    def raw_predict(self, X: np.ndarray) -> np.ndarray:
        """The model's raw score (log-odds) per row of :meth:`matrix`'s array."""
        import numpy as np
        from sklearn.ensemble._hist_gradient_boosting._predictor import (
            _predict_from_raw_data,
        )

        n = X.shape[0]
        if n <= self.forest_rows:
            return self._forest.raw_predict(X, self._baseline)
        if n > _CHUNK_ROWS:  # rows are independent: bound the (trees, rows) buffer
            parts = [self.raw_predict(X[i : i + _CHUNK_ROWS]) for i in range(0, n, _CHUNK_ROWS)]
            return np.concatenate(parts)
        n_threads = 1 if n < _SINGLE_THREAD_ROWS else _effective_threads()
        # Row 0 the baseline, row t the t-th tree's outputs; a sequential cumsum down the
        # rows makes the same additions in the same order as HistGradientBoosting._raw_predict.
        sums = np.empty((len(self._trees) + 1, n), dtype=np.float64)
        sums[0] = self._baseline
        known, f_idx_map = self._known_cat_bitsets, self._f_idx_map
        for t, (nodes, bitsets) in enumerate(self._tree_views, start=1):
            _predict_from_raw_data(nodes, X, bitsets, known, f_idx_map, n_threads, sums[t])
        raw: np.ndarray = np.cumsum(sums, axis=0)[-1]
        return raw

    def predict_proba(self, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> np.ndarray:
        """P(late) per row; ``columns`` maps every feature to its n values (None = missing)."""
        raw = self.raw_predict(self.matrix(columns))
        proba: np.ndarray = self._loss.predict_proba(raw)[:, 1]
        return proba


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _effective_threads() -> int:
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    threads: int = _openmp_effective_n_threads()
    return threads


def _check_encoder(encoder: Any, where: str) -> None:
    unknown = getattr(encoder, "unknown_value", None)
    missing = getattr(encoder, "encoded_missing_value", None)
    if not (
        encoder.handle_unknown == "use_encoded_value"
        and isinstance(unknown, float)
        and math.isnan(unknown)
        and isinstance(missing, float)
        and math.isnan(missing)
    ):
        raise ModelLayoutError(
            f"{where}: the OrdinalEncoder must map unknown and missing values to NaN "
            "(handle_unknown='use_encoded_value', unknown_value=nan, "
            "encoded_missing_value=nan); retrain with dslc.usecases.tabular.gradient_boosting"
        )


def _is_passthrough(transformer: Any) -> bool:
    # A fitted ColumnTransformer holds 'passthrough' as an identity FunctionTransformer.
    from sklearn.preprocessing import FunctionTransformer

    if isinstance(transformer, str):
        return transformer == "passthrough"
    return (
        isinstance(transformer, FunctionTransformer)
        and transformer.func is None
        and transformer.inverse_func is None
    )


def _outer_layout(prep: Any) -> tuple[list[str], dict[str, dict[Any, float]]]:
    """Our ColumnTransformer: output column names, and {column: {category: code}}."""
    from sklearn.preprocessing import OrdinalEncoder

    codes: dict[str, dict[Any, float]] = {}
    for name, transformer, cols in prep.transformers_:
        if name == "remainder" and transformer == "drop":
            continue
        if _is_passthrough(transformer):
            continue
        if not isinstance(transformer, OrdinalEncoder):
            raise ModelLayoutError(
                f"preprocessing step {name!r} is a {type(transformer).__name__}; only "
                "OrdinalEncoder and passthrough columns can be compiled"
            )
        _check_encoder(transformer, f"preprocessing step {name!r}")
        for col, cats in zip(cols, transformer.categories_, strict=True):
            # Missing values (None/NaN) stay out of the dict: a lookup miss is NaN, as the
            # encoder's encoded_missing_value is.
            codes[str(col)] = {cat: float(i) for i, cat in enumerate(cats) if isinstance(cat, str)}
    names = [str(c) for c in prep.get_feature_names_out()]
    return names, codes


def compile_model(pipeline: Pipeline) -> Predictor:
    """Compile a fitted :func:`dslc.usecases.tabular.gradient_boosting` pipeline for serving."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.utils.validation import check_is_fitted

    from dslc.model.spec import model_features

    steps = dict(pipeline.named_steps) if hasattr(pipeline, "named_steps") else {}
    prep, model = steps.get("prep"), steps.get("model")
    if not isinstance(prep, ColumnTransformer) or not isinstance(
        model, HistGradientBoostingClassifier
    ):
        raise ModelLayoutError(
            "expected a Pipeline with steps 'prep' (ColumnTransformer) and 'model' "
            "(HistGradientBoostingClassifier), as dslc.usecases.tabular.gradient_boosting "
            "makes; got "
            f"{[(k, type(v).__name__) for k, v in steps.items()]}"
        )
    check_is_fitted(model)
    if model.n_trees_per_iteration_ != 1 or len(model.classes_) != 2:
        raise ModelLayoutError("only a binary classifier can be compiled")
    features = [str(f) for f in getattr(prep, "feature_names_in_", [])]
    expected = model_features()
    if features != expected:
        raise ModelLayoutError(
            f"the pipeline was fitted on columns {features}, not the use case's model inputs "
            f"{expected}: retrain it"
        )
    outer_names, outer_codes = _outer_layout(prep)
    if len(outer_names) != model.n_features_in_:
        raise ModelLayoutError(
            f"the model reads {model.n_features_in_} columns, preprocessing makes "
            f"{len(outer_names)}"
        )

    # HistGradientBoosting's own preprocessing (fitted when categorical_features is set):
    # its categorical columns, re-encoded, come first, then the numerical ones.
    is_cat = np.asarray(model.is_categorical_, dtype=bool)
    order = [outer_names[i] for i in np.flatnonzero(is_cat)] + [
        outer_names[i] for i in np.flatnonzero(~is_cat)
    ]
    codes: dict[str, dict[Any, float]] = {
        n: c for n, c in outer_codes.items() if n in order and not is_cat[outer_names.index(n)]
    }
    if is_cat.any():
        inner = model._preprocessor
        encoder = inner.named_transformers_["encoder"]
        _check_encoder(encoder, "the model's categorical encoder")
        known = model._bin_mapper.bin_thresholds_
        for k, i in enumerate(np.flatnonzero(is_cat)):
            name = outer_names[i]
            if name not in outer_codes:
                raise ModelLayoutError(
                    f"categorical model column {name!r} is not an OrdinalEncoder output"
                )
            inner_code = {float(c): float(j) for j, c in enumerate(encoder.categories_[k])}
            # Categories the model never saw while binning go the missing-value way: NaN.
            seen = {float(c) for c in known[k]}
            codes[name] = {
                cat: inner_code[code]
                for cat, code in outer_codes[name].items()
                if code in inner_code and inner_code[code] in seen
            }
        known_cat_bitsets, f_idx_map = model._bin_mapper.make_known_categories_bitsets()
    else:
        known_cat_bitsets = np.zeros((0, 8), dtype=np.uint32)
        f_idx_map = np.zeros(len(order), dtype=np.uint32)
    trees = [
        _Tree(p.nodes, p.raw_left_cat_bitsets) for iteration in model._predictors for p in iteration
    ]
    return Predictor(
        features=expected,
        order=order,
        codes=codes,
        trees=trees,
        known_cat_bitsets=known_cat_bitsets,
        f_idx_map=f_idx_map,
        baseline=float(np.asarray(model._baseline_prediction).reshape(-1)[0]),
        loss=model._loss,
    )
