"""Load a registered version for serving: download, compile, self-test.

A version is served only after its self-test: the compiled predictor
(:mod:`dslc.serving.predictor`) must agree with the sklearn pipeline on the model's input
example within :data:`SELF_TEST_TOLERANCE`, with finite probabilities in [0, 1].
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from dslc.errors import UserError
from dslc.serving.batcher import ServedModel
from dslc.serving.schema import InputSchema, read_input_example
from dslc.serving.unseen import UnseenCategories

SELF_TEST_TOLERANCE = 1e-9


class LoadError(UserError, RuntimeError):
    """A version could not be loaded or failed its self-test; the message says which and why."""


def self_test(pipeline: Any, predictor: Any, columns: dict[str, list[Any]]) -> None:
    """The compiled predictor answers ``columns`` as the pipeline does, with probabilities."""
    import numpy as np
    import pandas as pd

    from dslc.model.spec import features_of

    n = len(next(iter(columns.values())))
    got = np.asarray(predictor.predict_proba(columns), dtype=np.float64)
    if got.shape != (n,) or not np.all(np.isfinite(got)) or got.min() < 0 or got.max() > 1:
        raise LoadError(f"self-test: the model answered {got!r} for {n} rows, not probabilities")
    want = pipeline.predict_proba(features_of(pd.DataFrame(columns)))[:, 1]
    diff = float(np.max(np.abs(got - want)))
    if diff > SELF_TEST_TOLERANCE:
        raise LoadError(
            f"self-test: the compiled predictor differs from the pipeline by {diff:.3g} "
            "on the input example; the version cannot be served"
        )


def served_model_from_dir(
    path: Path, name: str, version: str, info: dict[str, Any] | None = None
) -> ServedModel:
    """Load a downloaded MLflow model directory (skops, trusted types), compile and self-test it."""
    from dslc.model.registry import load_local_model
    from dslc.serving.predictor import compile_model

    schema = InputSchema.from_model_dir(path)
    pipeline = load_local_model(path)
    predictor = compile_model(pipeline)
    example = read_input_example(path)
    if example is None or not set(schema.names) <= example.keys():
        example = schema.sample()
    self_test(pipeline, predictor, {k: example[k] for k in schema.names})
    return ServedModel(
        name=name,
        version=str(version),
        predictor=predictor,
        schema=schema,
        loaded_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        info=info or {},
        unseen=UnseenCategories.of(predictor),
    )


def load_served_model(name: str, version: str, tracking_uri: str | None = None) -> ServedModel:
    """Download version ``name``/``version`` from the registry once and make it servable."""
    import mlflow.artifacts

    from dslc.model import registry

    uri = registry.resolve_tracking_uri(tracking_uri)
    c = registry.client(uri)
    mv = registry.get_version(c, name, version)
    with tempfile.TemporaryDirectory(prefix="dslc-serve-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=str(mv.source), dst_path=tmp, tracking_uri=uri
        )
        info = {"uri": f"models:/{name}/{version}", "source": str(mv.source), "run_id": mv.run_id}
        return served_model_from_dir(Path(local), name, str(version), info)


def resolve_version(model_uri: str, tracking_uri: str | None = None) -> str:
    """The registered version a model URI names, checked to exist (RegistryError if not)."""
    from dslc.model import registry

    name, version = registry.resolve_model_uri(model_uri, tracking_uri)
    registry.get_version(registry.client(tracking_uri), name, version)
    return version
