"""The serving fast path gives bitwise the offline pipeline's probabilities, faster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io
from threadpoolctl import threadpool_limits

from dslc.model import training
from dslc.model.spec import features_of
from dslc.model.training import TrainParams
from dslc.serving import predictor as predictor_mod
from dslc.serving.predictor import ModelLayoutError, compile_model
from dslc.usecases.flights.model import MODEL_FEATURES
from dslc.usecases.tabular import GRADIENT_BOOSTING_TRUSTED_TYPES

CARRIERS = ["UA", "B6", "EV", "DL", "AA", "MQ", "WN", "US", "9E", "VX"]
ORIGINS = ["EWR", "JFK", "LGA"]
# More than 32 destinations, so category bitsets use more than their first word.
DESTS = [f"D{i:02d}" for i in range(70)]


def frame(n: int, seed: int, *, unseen: float = 0.0, missing: float = 0.0) -> pd.DataFrame:
    """Feature rows with a learnable label; a share of unseen categories and missing values."""
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {
        "carrier": rng.choice(CARRIERS, n).astype(object),
        "origin": rng.choice(ORIGINS, n).astype(object),
        "dest": rng.choice(DESTS, n).astype(object),
        "distance": rng.uniform(80, 4000, n),
        "sched_dep_hour": rng.integers(5, 24, n).astype(float),
        "sched_dep_minute": rng.integers(0, 60, n).astype(float),
        "sched_arr_hour": rng.integers(0, 24, n).astype(float),
        "sched_arr_minute": rng.integers(0, 60, n).astype(float),
        "day_of_week": rng.integers(0, 7, n).astype(float),
    }
    for name in MODEL_FEATURES[len(cols) :]:
        cols[name] = rng.normal(20, 8, n)
    df = pd.DataFrame(cols)
    dest_code = df["dest"].str[1:].astype(int)
    logit = (
        -1.5
        + 0.12 * (df["sched_dep_hour"] - 12)
        + 0.9 * (df["origin"] == "EWR")
        + 0.6 * df["carrier"].isin(["EV", "9E"])
        + 0.8 * (dest_code % 3 == 0)
        + 0.04 * np.nan_to_num(df["wind_speed"] - 20)
    )
    df["late"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int8")
    for col in ("carrier", "origin", "dest"):
        if unseen:
            mask = rng.random(n) < unseen
            df.loc[mask, col] = rng.choice(["ZZ", "QQQ", "", "ewr"], int(mask.sum()))
        if missing:
            df.loc[rng.random(n) < missing, col] = None
    for col in ("temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "visib"):
        if missing:
            df.loc[rng.random(n) < missing, col] = np.nan
    return df


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    """Two different fitted pipelines (the second saw missing categories in training)."""
    # One OpenMP thread: on a busy machine two spinning threads make fitting 10-50x slower.
    with threadpool_limits(1, "openmp"):
        first = training.fit(frame(2500, seed=1), TrainParams(max_iter=60, seed=1))
        second = training.fit(
            frame(2500, seed=2, missing=0.05),
            TrainParams(max_iter=40, max_leaf_nodes=63, min_samples_leaf=5, learning_rate=0.2),
        )
    return {"first": first, "second": second}


def reference(pipe: object, df: pd.DataFrame) -> np.ndarray:
    """The offline answer the predictor must reproduce bitwise."""
    with threadpool_limits(1, "openmp"):
        proba: np.ndarray = pipe.predict_proba(features_of(df))[:, 1]  # type: ignore[attr-defined]
    return proba


def as_columns(df: pd.DataFrame) -> dict[str, list[object]]:
    """What the server hands the predictor: plain lists, None for missing values."""
    out: dict[str, list[object]] = {}
    for col in MODEL_FEATURES:
        values = df[col].tolist()
        out[col] = [None if (isinstance(v, float) and np.isnan(v)) else v for v in values]
    return out


# Both sides of the switch from the numpy walk to the per-tree walk, and the threaded size.
FOREST = predictor_mod._FOREST_ROWS


@pytest.mark.parametrize("name", ["first", "second"])
@pytest.mark.parametrize("n", [1, 3, FOREST, FOREST + 1, 100, 5000])
def test_bitwise_equal_to_the_pipeline(models: dict[str, object], name: str, n: int) -> None:
    pipe = models[name]
    df = frame(n, seed=100 + n, unseen=0.1, missing=0.1)
    want = reference(pipe, df)
    got = compile_model(pipe).predict_proba(as_columns(df))  # type: ignore[arg-type]
    assert got.dtype == np.float64
    assert got.shape == (n,)
    assert np.abs(got - want).max() <= 1e-12
    assert np.array_equal(got, want)


@pytest.mark.parametrize("forest_rows", [0, 10**6])
def test_both_tree_walks_agree(models: dict[str, object], forest_rows: int) -> None:
    """The numpy walk (few rows) and the per-tree walk (many rows) on the same rows."""
    df = frame(300, seed=7, unseen=0.2, missing=0.2)
    for pipe in models.values():
        p = compile_model(pipe)  # type: ignore[arg-type]
        p.forest_rows = forest_rows
        assert np.array_equal(p.predict_proba(as_columns(df)), reference(pipe, df))


def test_numpy_inputs_and_special_values(models: dict[str, object]) -> None:
    pipe = models["first"]
    df = frame(40, seed=11, unseen=0.2, missing=0.2)
    df.loc[0, "temp"], df.loc[1, "temp"] = np.inf, -np.inf
    df.loc[2, "wind_gust"] = 1e300
    df.loc[3, "carrier"] = np.nan  # a float NaN category is missing too
    columns = {c: df[c].to_numpy() for c in MODEL_FEATURES}
    columns["origin"] = np.array(df["origin"].tolist(), dtype=object)
    columns["dest"] = df["dest"].fillna("unknown").to_numpy(dtype=str)  # numpy str_ values
    df["dest"] = df["dest"].fillna("unknown")
    p = compile_model(pipe)  # type: ignore[arg-type]
    for rows in (slice(0, 5), slice(0, 40)):
        sub = {c: v[rows] for c, v in columns.items()}
        assert np.array_equal(p.predict_proba(sub), reference(pipe, df.iloc[rows]))


def test_every_category_and_only_unknowns(models: dict[str, object]) -> None:
    """Each known category alone, and rows where every category is unseen or missing."""
    pipe = models["second"]
    p = compile_model(pipe)  # type: ignore[arg-type]
    base = frame(len(DESTS), seed=3)
    base["dest"] = DESTS
    base["carrier"] = [CARRIERS[i % len(CARRIERS)] for i in range(len(DESTS))]
    assert np.array_equal(p.predict_proba(as_columns(base)), reference(pipe, base))
    odd = frame(4, seed=4)
    odd[["carrier", "origin", "dest"]] = [["??", None, "x"], [None, None, None]] * 2
    assert np.array_equal(p.predict_proba(as_columns(odd)), reference(pipe, odd))


def test_skops_round_trip_compiles_the_same(models: dict[str, object]) -> None:
    """A model loaded the way serving loads it (skops, trusted types) gives the same answers."""
    pipe = models["first"]
    loaded = skops.io.loads(skops.io.dumps(pipe), trusted=list(GRADIENT_BOOSTING_TRUSTED_TYPES))
    df = frame(50, seed=12, unseen=0.1, missing=0.1)
    want = reference(pipe, df)
    for rows in (1, 50):
        got = compile_model(loaded).predict_proba(as_columns(df.head(rows)))
        assert np.array_equal(got, want[:rows])


def test_empty_input_gives_empty_output(models: dict[str, object]) -> None:
    p = compile_model(models["first"])  # type: ignore[arg-type]
    out = p.predict_proba({c: [] for c in MODEL_FEATURES})
    assert out.shape == (0,)
    assert p.features == MODEL_FEATURES


def test_bad_columns_are_named(models: dict[str, object]) -> None:
    p = compile_model(models["first"])  # type: ignore[arg-type]
    cols = as_columns(frame(3, seed=5))
    with pytest.raises(ValueError, match="missing for the model's features: dest"):
        p.predict_proba({k: v for k, v in cols.items() if k != "dest"})
    with pytest.raises(ValueError, match="'temp' has 2 values"):
        p.predict_proba({**cols, "temp": [1.0, 2.0]})
    with pytest.raises(ValueError, match="'carrier' holds list"):
        p.predict_proba({**cols, "carrier": ["UA", ["UA"], "DL"]})


def test_refuses_a_pipeline_it_cannot_compile(models: dict[str, object]) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    with pytest.raises(ModelLayoutError, match="steps 'prep'"):
        compile_model(Pipeline([("model", LogisticRegression())]))
    with threadpool_limits(1, "openmp"):
        pipe = training.fit(frame(300, seed=6), TrainParams(max_iter=5))
    pipe.named_steps["prep"].named_transformers_["cat"].unknown_value = -1
    with pytest.raises(ModelLayoutError, match="unknown and missing values to NaN"):
        compile_model(pipe)


def test_known_categories_are_the_fitted_ones_and_others_score_as_missing(
    models: dict[str, object],
) -> None:
    from dslc.serving.unseen import UnseenCategories

    pred = compile_model(models["first"])  # type: ignore[arg-type]
    known = pred.known_categories()
    assert known == {"carrier": set(CARRIERS), "origin": set(ORIGINS), "dest": set(DESTS)}
    df = frame(6, seed=13)
    cols = as_columns(df)
    cols["carrier"][1] = "ZZ"
    cols["dest"][1] = "XXX"
    cols["dest"][4] = "ewr"  # case matters: not a known category
    assert UnseenCategories(known).check(cols) == [[], ["carrier", "dest"], [], [], ["dest"], []]
    # What "unseen" tells the client: the model answered as if the value were missing.
    as_missing = {k: list(v) for k, v in cols.items()}
    as_missing["carrier"][1] = as_missing["dest"][1] = as_missing["dest"][4] = None
    assert np.array_equal(pred.predict_proba(cols), pred.predict_proba(as_missing))
