"""What the `train` DAG's steps hand each other: plain JSON in XCom, typed here.

Each is a ``TypedDict``, so the step that writes a value and the steps that read it agree on
its keys under mypy, while XCom still stores an ordinary dict.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Window(TypedDict):
    first: str
    last: str
    days: int


class Split(TypedDict):
    """Where the split manifest is and what it holds (:func:`dslc.model.split.assemble`)."""

    split: str
    """The manifest's key in the lake."""
    window: Window
    rows: dict[str, int]
    """Rows per split: train, valid, holdout."""
    missing_days: int


class TrainConfig(TypedDict):
    train: dict[str, Any]
    """The hyperparameters and split sizes (:class:`dslc.model.training.TrainParams`)."""
    tolerance: float
    force_promote: bool
    model_name: str


class Assembled(Split):
    """The `assemble` step: the split, the checked config, and why this run trains."""

    config: TrainConfig
    lineage: dict[str, str]


class Logged(TypedDict):
    run_id: str
    reused: bool
    tracking_uri: str


class Trained(Logged):
    """The `train` step: the MLflow run holding the model, and where the time went."""

    fit_s: float
    # MLflow time the step waited for (after the fit), and the time opening the run took
    # meanwhile, while the model fitted.
    mlflow_s: float
    mlflow_open_s: float
    train_s: float
    valid_roc_auc: float


class Headline(TypedDict):
    roc_auc: float
    pr_auc: float
    log_loss: float
    brier: float


class Evaluated(TypedDict):
    """The `evaluate` step: challenger and champion on the same holdout."""

    run_id: str
    challenger: Headline
    champion: Headline | None
    champion_version: str | None
    champion_note: str | None
    collapsed_slices: list[str]


class Registered(TypedDict, total=False):
    """The `register` step: the model version (``created`` false when a retry found it)."""

    version: str
    created: bool
    profile_s: float


class Promoted(TypedDict):
    """The `promote` step: the gate's decision, and the champion it was measured against."""

    version: str
    promote: bool
    reason: str
    previous_champion: str | None
