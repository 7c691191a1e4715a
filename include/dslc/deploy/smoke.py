"""The smoke test: holdout rows through ``POST /predict`` must match the registered model offline.

The rows come from the holdout of the version's own training split (its ``dslc.split`` tag
names the split manifest in the lake), sampled evenly across the holdout days so the same
version always gets the same rows. Offline, the version is loaded from the registry the way
the service loads it (:func:`dslc.model.registry.load_version`) and scored with
``pipeline.predict_proba(features_of(df))[:, 1]``. The service must answer every row
with the version being deployed and a probability within :data:`TOLERANCE` of the offline one.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from dslc.deploy.target import DeployError

if TYPE_CHECKING:
    import httpx
    import numpy as np
    import pandas as pd

    from dslc.lake import Lake

log = logging.getLogger(__name__)

TOLERANCE = 1e-9
SPLIT_TAG = "dslc.split"


class SmokeTestError(DeployError):
    """The service's answers do not match the model's offline predictions (or cannot be had)."""

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result


def split_key(lake: Lake, split_uri: str) -> str:
    """The lake key of a split manifest from its full URI (the version's ``dslc.split`` tag)."""
    root = lake.uri() + "/"
    if not split_uri.startswith(root):
        raise SmokeTestError(
            f"the version's split manifest {split_uri} is not in the lake {lake.url}: it was "
            "trained against another lake. Point DSLC_LAKE_URL at that lake to smoke-test it"
        )
    return split_uri[len(root) :]


def holdout_sample(lake: Lake, split_uri: str, rows: int) -> pd.DataFrame:
    """``rows`` holdout rows of the split, evenly spaced over the holdout (deterministic)."""
    import numpy as np

    from dslc.model.split import TrainingError, load_frame, read_split

    split = read_split(lake, split_key(lake, split_uri))
    try:
        df = load_frame(lake, split, "holdout")
    except TrainingError as e:
        # Online and offline score the same rows, so current partitions still make a fair
        # comparison; the changed hash is worth a warning, not a failed deploy.
        log.warning("%s; smoke-testing on the partitions as they are now", e)
        import pandas as pd

        parts = [p["partition"] for p in split["partitions"] if p["split"] == "holdout"]
        df = pd.concat([lake.read_partition(p) for p in parts], ignore_index=True)
    if df.empty:
        raise SmokeTestError(f"the holdout of {split_uri} has no rows to smoke-test with")
    n = min(rows, len(df))
    positions = np.unique(np.linspace(0, len(df) - 1, n).round().astype("int64"))
    return df.iloc[positions].reset_index(drop=True)


def records_of(df: pd.DataFrame) -> list[dict[str, Any]]:
    """``/predict`` records: the model features (NaN -> null) plus ``ds`` and the log key."""
    from dslc.model.spec import features_of, model_spec
    from dslc.settings import get_usecase

    spec = model_spec()
    log_key = get_usecase().log_key
    key = log_key.name if log_key is not None else None
    feats = features_of(df, spec)
    numeric = set(spec.numeric)
    out = []
    for i, row in enumerate(feats.itertuples(index=False, name=None)):
        rec: dict[str, Any] = {}
        for col, value in zip(spec.features, row, strict=True):
            if col in numeric:
                rec[col] = None if math.isnan(value) else float(value)
            else:
                rec[col] = None if value is None or value != value else str(value)
        if "ds" in df.columns:
            rec["ds"] = str(df["ds"].iat[i])
        if key is not None and key in df.columns:
            rec[key] = int(df[key].iat[i])
        out.append(rec)
    return out


def online_probabilities(
    http: httpx.Client, endpoint: str, records: list[dict[str, Any]], *, batch: int
) -> tuple[list[float], set[str]]:
    """The service's P(late) for each record (posted in batches) and the versions that answered."""
    import httpx

    probs: list[float] = []
    versions: set[str] = set()
    url = f"{endpoint.rstrip('/')}/predict"
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        try:
            resp = http.post(url, json=chunk)
        except httpx.HTTPError as e:
            raise SmokeTestError(f"POST {url} failed: {type(e).__name__}: {e}") from e
        if resp.status_code != 200:
            raise SmokeTestError(f"POST {url} answered {resp.status_code}: {resp.text[:500]}")
        body = resp.json()
        preds = body.get("predictions") or []
        if len(preds) != len(chunk):
            raise SmokeTestError(
                f"POST {url} answered {len(preds)} predictions for {len(chunk)} records"
            )
        versions.add(str(body.get("version")))
        probs.extend(float(p["probability"]) for p in preds)
    return probs, versions


def compare(
    offline: np.ndarray, online: list[float], tolerance: float = TOLERANCE
) -> dict[str, Any]:
    """How far the service's probabilities are from the offline ones."""
    import numpy as np

    on = np.asarray(online, dtype="float64")
    diff = np.abs(on - offline)
    diff[np.isnan(diff)] = np.inf  # a NaN answer is as wrong as it gets
    worst = int(np.argmax(diff)) if len(diff) else 0
    return {
        "rows": len(on),
        "tolerance": tolerance,
        "max_abs_diff": float(diff.max()) if len(diff) else 0.0,
        "mismatches": int((diff > tolerance).sum()),
        "worst": (
            {"row": worst, "online": float(on[worst]), "offline": float(offline[worst])}
            if len(diff)
            else None
        ),
    }


def smoke_test(
    model_name: str,
    version: str,
    *,
    lake: Lake,
    endpoint: str,
    rows: int,
    tolerance: float = TOLERANCE,
    tracking_uri: str | None = None,
    http: httpx.Client | None = None,
) -> dict[str, Any]:
    """Holdout rows online vs offline; returns the result, raises SmokeTestError if it fails."""
    import httpx

    from dslc.model import registry
    from dslc.model.spec import features_of
    from dslc.settings import get_settings

    c = registry.client(tracking_uri)
    mv = registry.get_version(c, model_name, version)
    split_uri = (mv.tags or {}).get(SPLIT_TAG)
    if not split_uri:
        raise SmokeTestError(
            f"{model_name} version {version} has no {SPLIT_TAG!r} tag, so there is no holdout "
            "to smoke-test it with: register versions through the `train` DAG"
        )
    sample = holdout_sample(lake, split_uri, rows)
    pipeline = registry.load_version(model_name, version, tracking_uri)
    offline = pipeline.predict_proba(features_of(sample))[:, 1]
    own = http is None
    http = http or httpx.Client(timeout=60.0)
    try:
        online, versions = online_probabilities(
            http, endpoint, records_of(sample), batch=get_settings().serving_max_records
        )
    finally:
        if own:
            http.close()
    result = {"split": split_uri, **compare(offline, online, tolerance)}
    result["version_seen"] = ",".join(sorted(versions))
    result["passed"] = versions == {version} and result["mismatches"] == 0
    if versions != {version}:
        raise SmokeTestError(
            f"smoke test: the service answered with version {result['version_seen']}, not "
            f"{version}",
            result,
        )
    if result["mismatches"]:
        w = result["worst"]
        raise SmokeTestError(
            f"smoke test: {result['mismatches']} of {result['rows']} holdout rows differ from "
            f"the offline predictions by more than {tolerance:g} (max {result['max_abs_diff']:.3g}"
            f", row {w['row']}: online {w['online']:.6f} vs offline {w['offline']:.6f})",
            result,
        )
    return result
