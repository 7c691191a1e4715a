"""Categories the served model never saw in training: known once per version, checked per batch.

A carrier or destination the fitted encoders do not know is not refused (ingest would reject
it, but a live client should still get an answer, and the drift monitor wants to see it in the
prediction log): the model treats it as a missing value. The answer says so instead of looking
like any other prediction: each such record's prediction carries ``unseen``, the names of its
features holding an unknown category, and ``/metrics`` counts them per feature.

The known sets are read once at load from the compiled predictor (its ``{category: code}``
dicts, i.e. the pipeline's fitted encoder categories that reach the trees). The check of a
batch is one C-level ``frozenset.issuperset`` per categorical column; only a column that fails
it is scanned row by row to name the records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class UnseenCategories:
    """The categories a model was fitted on, per categorical feature, and the batch check."""

    __slots__ = ("known",)

    def __init__(self, known: Mapping[str, Iterable[str]]) -> None:
        self.known: tuple[tuple[str, frozenset[str]], ...] = tuple(
            (name, frozenset(cats)) for name, cats in known.items()
        )

    @classmethod
    def of(cls, predictor: Any) -> UnseenCategories:
        """From a predictor's ``known_categories()``; none known (no check) if it has none."""
        known = getattr(predictor, "known_categories", None)
        return cls(known() if callable(known) else {})

    @property
    def features(self) -> list[str]:
        return [name for name, _ in self.known]

    def check(self, columns: Mapping[str, Any]) -> list[list[str]] | None:
        """Per record, its features holding an unseen category; None when every one is known.

        Nulls are missing values, not unseen categories. Records are listed in the
        order of ``columns``; a record with none gets an empty list.
        """
        hits: list[list[str]] | None = None
        for name, known in self.known:
            col = columns[name]
            if known.issuperset(col):
                continue
            new = set(col).difference(known)
            new.discard(None)
            if not new:
                continue
            if hits is None:
                hits = [[] for _ in range(len(col))]
            for i, value in enumerate(col):
                if value in new:
                    hits[i].append(name)
        return hits


def count_unseen(hits: list[list[str]]) -> dict[str, int]:
    """Records per feature with an unseen category, from :meth:`UnseenCategories.check`."""
    out: dict[str, int] = {}
    for names in hits:
        for name in names:
            out[name] = out.get(name, 0) + 1
    return out
