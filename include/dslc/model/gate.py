"""The promotion gate: whether a challenger, evaluated against the champion, may replace it.

Pure: reads the evaluation summary, returns a :class:`Decision` with the reason in words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Decision:
    """The promotion gate's answer."""

    promote: bool
    reason: str


def decide(
    evaluation: Mapping[str, Any], *, tolerance: float, floor: float, force: bool
) -> Decision:
    """The gate: not worse than the champion by more than ``tolerance``, above ``floor``, no
    slice collapsed; or ``force``."""
    ch = evaluation["challenger"]["roc_auc"]
    champ = evaluation.get("champion")
    problems = []
    if not ch >= floor:
        problems.append(f"holdout ROC AUC {ch:.4f} is below the floor {floor:.4f}")
    if champ is not None and ch < champ["roc_auc"] - tolerance:
        problems.append(
            f"holdout ROC AUC {ch:.4f} is worse than the champion's "
            f"{champ['roc_auc']:.4f} by more than the tolerance {tolerance:.4f}"
        )
    if evaluation.get("collapsed_slices"):
        problems.append("slices collapsed: " + "; ".join(evaluation["collapsed_slices"]))
    if force:
        why = "forced by force_promote" + (f" despite: {'; '.join(problems)}" if problems else "")
        return Decision(True, why)
    if problems:
        return Decision(False, "; ".join(problems))
    vs = (
        f"champion v{evaluation['champion_version']} {champ['roc_auc']:.4f}"
        if champ is not None
        else "no champion"
    )
    return Decision(
        True, f"holdout ROC AUC {ch:.4f} vs {vs} (tolerance {tolerance}, floor {floor})"
    )
