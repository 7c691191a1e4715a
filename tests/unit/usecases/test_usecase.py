"""The use case boundary: selecting one, what a use case must hold, and what every feature
table is held to whatever the builder."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from dslc.data import features
from dslc.settings import get_settings, get_usecase
from dslc.usecase import FeatureField, UseCaseError, load_usecase
from dslc.usecases.flights import USECASE as FLIGHTS
from tests.usecases import sensors


def test_flights_is_the_default_and_names_the_dataset_and_model(monkeypatch) -> None:
    monkeypatch.delenv("DSLC_USECASE", raising=False)
    monkeypatch.delenv("DSLC_MODEL_NAME", raising=False)
    get_settings.cache_clear()
    assert get_usecase() is FLIGHTS
    assert (get_settings().dataset, get_settings().model_name) == ("flights", "flights_late")


def test_a_use_case_is_selected_by_module_path_and_settings_follow(monkeypatch) -> None:
    monkeypatch.setenv("DSLC_USECASE", "tests.usecases.sensors")
    get_settings.cache_clear()
    assert get_usecase() is sensors.USECASE
    assert (get_settings().dataset, get_settings().model_name) == ("readings", "sensors_failure")
    monkeypatch.setenv("DSLC_MODEL_NAME", "mine")
    get_settings.cache_clear()
    assert get_settings().model_name == "mine"


def test_an_unknown_use_case_says_how_to_name_one() -> None:
    with pytest.raises(UseCaseError, match=r"no module 'dslc.usecases.nope'.*dotted path"):
        load_usecase("nope")


def test_a_module_without_usecase_is_refused() -> None:
    with pytest.raises(UseCaseError, match="must define USECASE = UseCase"):
        load_usecase("tests.usecases")


def test_serving_fields_must_describe_exactly_the_model_inputs() -> None:
    fields = (*sensors.USECASE.serving_fields[:-1], FeatureField("extra", "float"))
    with pytest.raises(UseCaseError, match=r"missing \['vibration'\], extra \['extra'\]"):
        dataclasses.replace(sensors.USECASE, serving_fields=fields)


def test_the_feature_key_starts_with_the_day_and_no_leaky_column_is_a_feature() -> None:
    spec = sensors.FEATURES
    with pytest.raises(UseCaseError, match="must start with 'ds'"):
        dataclasses.replace(sensors.USECASE, features=dataclasses.replace(spec, key=("machine",)))
    leaky = dataclasses.replace(spec, leaky=frozenset({"temperature"}))
    with pytest.raises(UseCaseError, match="leaky column"):
        dataclasses.replace(sensors.USECASE, features=leaky)


def test_the_flights_use_case_is_consistent() -> None:
    assert FLIGHTS.primary.name == "flights" and [d.name for d in FLIGHTS.secondary] == ["weather"]
    assert [f.name for f in FLIGHTS.serving_fields] == FLIGHTS.model.features
    with pytest.raises(KeyError, match="known: flights, weather"):
        FLIGHTS.dataset("planes")


def _readings() -> pd.DataFrame:
    return sensors.day_frame(sensors.FIRST_DAY)


def test_every_feature_table_gets_the_spec_columns_sorted_by_key() -> None:
    table = features.build({"readings": _readings().iloc[::-1]}, "2024-01-01", sensors.USECASE)
    assert list(table.columns) == sensors.FEATURES.columns
    keys = table[["machine", "reading"]]
    assert keys.equals(keys.sort_values(["machine", "reading"]).reset_index(drop=True))
    assert table.equals(features.build({"readings": _readings()}, "2024-01-01", sensors.USECASE))


def test_a_builder_that_drops_a_column_or_a_label_that_is_not_binary_is_refused() -> None:
    def dropping(frames, ds):
        return sensors.build_features(frames, ds).drop(columns=["vibration"])

    def not_binary(frames, ds):
        return sensors.build_features(frames, ds).assign(failure=2)

    for builder, message in ((dropping, r"left out \['vibration'\]"), (not_binary, "not 0/1")):
        usecase = dataclasses.replace(sensors.USECASE, build_features=builder)
        with pytest.raises(UseCaseError, match=message):
            features.build({"readings": _readings()}, "2024-01-01", usecase)


def test_a_feature_key_column_that_no_client_sends_needs_a_log_key() -> None:
    with pytest.raises(UseCaseError, match=r"\['reading'\] are not model inputs"):
        dataclasses.replace(sensors.USECASE, log_key=None)
    with pytest.raises(UseCaseError, match="whole number"):
        dataclasses.replace(sensors.USECASE, log_key=FeatureField("reading", "str"))


def test_the_serving_api_takes_the_use_cases_log_key(monkeypatch) -> None:
    from dslc.serving.schema import InputSchema, RequestError

    monkeypatch.setenv("DSLC_USECASE", "tests.usecases.sensors")
    get_settings.cache_clear()
    schema = InputSchema.default()
    record = {"machine": "M1", "hour": 3, "temperature": 61.5, "vibration": 1.1}
    batch = schema.validate(
        [{**record, "reading": 7}, record], default_ds="2024-01-02", max_records=9
    )
    assert batch.key == [7, None] and schema.optional == ("ds", "reading")
    with pytest.raises(RequestError, match=r"unknown field 'flight'.*optional ds, reading"):
        schema.validate([{**record, "flight": 7}], default_ds="2024-01-02", max_records=9)
