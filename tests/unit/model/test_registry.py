"""The registry module without a server: safe loading, messages, filters, the comparison table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dslc.model import registry, spec, training
from dslc.model.spec import features_of
from dslc.usecases.flights import USECASE
from dslc.usecases.tabular import GRADIENT_BOOSTING_TRUSTED_TYPES
from tests.support import free_port
from tests.unit.model.test_training import synthetic_features


def test_an_unreachable_server_is_a_clear_error(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("DSLC_MLFLOW_TRACKING_URI", url)
    from dslc.settings import get_settings

    get_settings.cache_clear()
    with pytest.raises(registry.RegistryUnavailableError) as err:
        registry.client()
    assert f"the MLflow server at {url} is not reachable" in str(err.value)
    assert "DSLC_MLFLOW_TRACKING_URI" in str(err.value)


def test_tracking_uri_comes_from_settings(monkeypatch):
    from dslc.settings import get_settings

    monkeypatch.delenv("DSLC_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DSLC_MLFLOW_PORT", "5123")
    get_settings.cache_clear()
    assert registry.resolve_tracking_uri() == "http://127.0.0.1:5123"
    assert registry.resolve_tracking_uri("http://x:1") == "http://x:1"


@pytest.fixture(scope="module")
def pipeline_and_example():
    df = synthetic_features("2013-01-01", n=400)
    pipe = training.fit(df, training.TrainParams(max_iter=5))
    return pipe, features_of(df.head(5))


def test_saved_model_loads_with_our_trusted_types_and_pinned_requirements(
    tmp_path: Path, pipeline_and_example
):
    pipe, example = pipeline_and_example
    registry.save_model(pipe, tmp_path / "model", example)
    mlmodel = (tmp_path / "model" / "MLmodel").read_text()
    assert "serialization_format: skops" in mlmodel and "signature:" in mlmodel
    reqs = (tmp_path / "model" / "requirements.txt").read_text()
    assert "scikit-learn==" in reqs and "skops==" in reqs
    loaded = registry.load_local_model(tmp_path / "model")
    assert (loaded.predict_proba(example) == pipe.predict_proba(example)).all()


def test_a_pickled_model_is_refused(tmp_path: Path, pipeline_and_example):
    import mlflow.sklearn

    pipe, _ = pipeline_and_example
    mlflow.sklearn.save_model(pipe, str(tmp_path / "m"), serialization_format="cloudpickle")
    with pytest.raises(registry.RegistryError, match="refusing to unpickle"):
        registry.load_local_model(tmp_path / "m")


def test_a_model_needing_more_trusted_types_is_refused(
    tmp_path: Path, pipeline_and_example, monkeypatch
):
    """The list in our code decides, not the one the artifact carries."""
    pipe, example = pipeline_and_example
    registry.save_model(pipe, tmp_path / "model", example)
    one_type = dataclasses.replace(USECASE.model, trusted_types=GRADIENT_BOOSTING_TRUSTED_TYPES[:1])
    monkeypatch.setattr(spec, "model_spec", lambda: one_type)
    with pytest.raises(Exception, match="Untrusted types"):
        registry.load_local_model(tmp_path / "model")


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("models:/flights_late/3", ("flights_late", "3", None)),
        ("models:/flights.late-2@champion", ("flights.late-2", None, "champion")),
    ],
)
def test_model_uris_parse_to_name_version_alias(uri: str, parsed: tuple[str, ...]):
    assert registry.parse_model_uri(uri) == parsed
    if parsed[1] is not None:  # a version needs no server to resolve
        assert registry.resolve_model_uri(uri) == parsed[:2]


@pytest.mark.parametrize("uri", ["models:/m", "models:/m/v1", "models:/m/1@a", "runs:/r/model"])
def test_a_malformed_model_uri_says_which_forms_work(uri: str):
    with pytest.raises(registry.RegistryError) as err:
        registry.parse_model_uri(uri)
    assert str(err.value) == (
        f"{uri!r} is not a model URI: use models:/<name>/<version> or models:/<name>@<alias>"
    )
    with pytest.raises(registry.RegistryError, match="is not a model URI"):
        registry.resolve_model_uri(uri)


def test_filter_values_are_quoted():
    run_id = "manual__2013-01-01T00:00:00+00:00"
    assert registry.filter_value(run_id) == f"'{run_id}'"
    assert registry.filter_value("it's") == "'it\\'s'"


def test_comparison_table_puts_challenger_and_champion_side_by_side():
    m = {"roc_auc": 0.7, "pr_auc": 0.4, "log_loss": 0.5, "brier": 0.2, "calibration_gap": 0.01}
    result = {
        "challenger": {"overall": m, "slices": {"origin=EWR": m}},
        "champion": {"overall": {**m, "roc_auc": 0.65}, "slices": {}},
        "champion_version": "4",
    }
    md = registry.comparison_markdown(result)
    assert "| slice | metric | challenger | champion v4 |" in md
    assert "| overall | roc_auc | 0.7000 | 0.6500 |" in md
    assert "| origin=EWR | roc_auc | 0.7000 | - |" in md


def test_saved_signature_is_the_one_a_prediction_would_give(tmp_path: Path, pipeline_and_example):
    """save_model infers the output schema without predicting: it must be the same schema."""
    from mlflow.models import Model, infer_signature

    pipe, example = pipeline_and_example
    registry.save_model(pipe, tmp_path / "model", example)
    saved = Model.load(str(tmp_path / "model")).signature
    assert saved == infer_signature(example, pipe.predict_proba(example)[:, 1])


def test_skops_load_is_only_skipped_while_saving(tmp_path: Path, pipeline_and_example, monkeypatch):
    """MLflow's re-load of the dump is skipped inside save_model, and skops.io.load is itself
    again afterwards, also when the save fails."""
    import skops.io

    real = skops.io.load
    pipe, example = pipeline_and_example
    registry.save_model(pipe, tmp_path / "model", example)
    assert skops.io.load is real

    def broken(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(skops.io, "dump", broken)
    with pytest.raises(Exception, match="could not be serialized"):
        registry.save_model(pipe, tmp_path / "again", example)
    assert skops.io.load is real
