"""The check that flags categories a served model never saw, record by record."""

from __future__ import annotations

import numpy as np

from dslc.serving.unseen import UnseenCategories, count_unseen

KNOWN = {"carrier": ["UA", "DL"], "dest": ["ORD", "LAX"]}


def columns(carrier: list[str | None], dest: list[str | None]) -> dict[str, object]:
    n = len(carrier)
    return {"carrier": carrier, "dest": dest, "distance": np.full(n, 700.0)}


def test_known_values_and_nulls_are_not_flagged() -> None:
    check = UnseenCategories(KNOWN)
    assert check.check(columns(["UA"], ["ORD"])) is None
    assert check.check(columns(["UA", None, "DL"], [None, "LAX", "ORD"])) is None


def test_each_record_names_its_unseen_features_in_feature_order() -> None:
    check = UnseenCategories(KNOWN)
    got = check.check(columns(["ZZ", "UA", "ZZ", None], ["XXX", "ORD", "LAX", "ord"]))
    assert got == [["carrier", "dest"], [], ["carrier"], ["dest"]]
    assert count_unseen(got) == {"carrier": 2, "dest": 2}


def test_a_single_record() -> None:
    check = UnseenCategories(KNOWN)
    assert check.check(columns(["ZZ"], ["ORD"])) == [["carrier"]]


def test_no_known_sets_means_no_check() -> None:
    class Bare:
        def predict_proba(self, columns: object) -> object:
            return []

    check = UnseenCategories.of(Bare())
    assert check.features == []
    assert check.check(columns(["ZZ"], ["XXX"])) is None


def test_known_sets_come_from_the_predictor() -> None:
    class WithCategories:
        def known_categories(self) -> dict[str, frozenset[str]]:
            return {"carrier": frozenset({"UA"})}

    check = UnseenCategories.of(WithCategories())
    assert check.features == ["carrier"]
    assert check.check(columns(["UA", "DL"], ["X", "Y"])) == [[], ["carrier"]]
