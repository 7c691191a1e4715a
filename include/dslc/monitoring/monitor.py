"""The drift monitor: score a day against the champion, keep the history, guard the retrain.

Plain Python under the ``drift_monitor`` DAG (no Airflow here: the DAG passes in the few facts
only Airflow knows, such as how many ``train`` runs are in flight). The statistics and the
policy are :mod:`dslc.monitoring.policy`; this module does the I/O around them:

* :func:`champion`: the champion version, its reference profile and holdout metrics (MLflow);
* :func:`compute`: the window's features scored against the profile, the champion's logged
  predictions scored against the labels, the policy's verdict over the last ``persistence``
  windows (each scored from its features, so the run order of days does not matter), written
  as ``monitoring/drift/ds=<ds>/report.json``;
* :func:`evaluate_guards`: the kill switch, a ``train`` run in flight, once per (champion
  version, day) and the cooldown, evaluated together so the decision lists every reason;
* trigger records under ``monitoring/drift/triggers/``: what was triggered, for the cooldown
  and for "once per window" across re-runs, backfills and metadata-DB resets;
* :func:`log_to_mlflow`: the day's metrics, stepped by day, in one MLflow run per champion
  version (experiment ``dslc-drift``), so the drift history is a chart in MLflow.

Every file written for a day is a function of its inputs (no wall-clock time), so re-running a
day rewrites the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from dslc.errors import UserError
from dslc.lake import Lake, day, dumps

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from dslc.monitoring.policy import Policy

log = logging.getLogger(__name__)

ZONE = "monitoring/drift"
TRIGGERS = f"{ZONE}/triggers"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
DECISION_JSON = "decision.json"
MLFLOW_EXPERIMENT = "dslc-drift"
TRAIN_DAG = "train"
# Days of past reports read for the heatmap (the persistence rule needs fewer).
HEATMAP_DAYS = 14
REPORT_SCHEMA = 1


class DriftMonitorError(UserError):
    """A drift check the user can fix (bad params, a champion without a profile)."""


@dataclass(frozen=True)
class Champion:
    """What the monitor compares against: the version the ``champion`` alias points at."""

    name: str
    version: str
    run_id: str
    profile: dict[str, Any] = field(repr=False)
    holdout: dict[str, float] = field(default_factory=dict)
    """The version's holdout metrics at training time (``roc_auc``, ``log_loss``)."""


# -- champion (MLflow) -----------------------------------------------------------------------


def champion(name: str, tracking_uri: str | None = None) -> Champion | None:
    """The champion with its reference profile and holdout metrics; None if there is none."""
    from dslc.model import registry

    uri = registry.resolve_tracking_uri(tracking_uri)
    c = registry.client(uri)
    with registry.reporting(uri, f"read the {registry.CHAMPION} of {name}"):
        mv = registry.get_alias(c, name, registry.CHAMPION)
        if mv is None:
            return None
        version = str(mv.version)
        # By version, not by alias again: the alias may move between two calls.
        profile = registry.profile_of(mv, uri)
        metrics = c.get_run(str(mv.run_id)).data.metrics if mv.run_id else {}
    holdout = {
        k: float(metrics[f"holdout_{k}"])
        for k in ("roc_auc", "log_loss")
        if f"holdout_{k}" in metrics
    }
    return Champion(
        name=name, version=version, run_id=str(mv.run_id), profile=profile, holdout=holdout
    )


# -- lake keys and small helpers -------------------------------------------------------------


def report_key(ds: str | dt.date) -> str:
    """``monitoring/drift/ds=YYYY-MM-DD``: where a day's report, page and decision live."""
    return f"{ZONE}/ds={day(ds)}"


def trigger_run_id(ds: str | dt.date, version: str) -> str:
    """The ``train`` run id for a retrain of champion ``version`` triggered by day ``ds``.

    Deterministic, so a re-run or backfill of the day asks for the same run and Airflow refuses
    a second one.
    """
    return f"drift__{day(ds)}__v{version}"


def window_days(ds: str | dt.date, days: int) -> list[str]:
    """The ``days`` days ending at ``ds`` (oldest first)."""
    if days < 1:
        raise DriftMonitorError(f"param 'window_days'={days} must be at least 1")
    last = dt.date.fromisoformat(day(ds))
    return [(last - dt.timedelta(days=i)).isoformat() for i in range(days - 1, -1, -1)]


def read_report(lake: Lake, ds: str | dt.date) -> dict[str, Any] | None:
    """A day's report, or None if that day was not scored."""
    key = report_key(ds)
    if not lake.exists(key, REPORT_JSON):
        return None
    report: dict[str, Any] = json.loads(lake.read_text(key, REPORT_JSON))
    return report


def history(lake: Lake, ds: str | dt.date, days: int) -> list[dict[str, Any]]:
    """The reports of the ``days`` days before ``ds`` that exist (oldest first)."""
    last = dt.date.fromisoformat(day(ds))
    out = []
    for i in range(days, 0, -1):
        report = read_report(lake, last - dt.timedelta(days=i))
        if report is not None:
            out.append(report)
    return out


# -- reading the window ----------------------------------------------------------------------


def load_days(lake: Lake, dataset: str, days: list[str]) -> dict[str, pd.DataFrame]:
    """The published feature partitions of ``days`` (day -> rows); unpublished days absent."""
    out = {}
    for d in days:
        key = Lake.partition("features", dataset, d)
        if lake.manifest(key) is not None:
            out[d] = lake.read_partition(key)
    return out


def _window_frame(frames: dict[str, pd.DataFrame], days: list[str]) -> pd.DataFrame | None:
    import pandas as pd

    parts = [frames[d] for d in days if d in frames]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def verdict_history(
    champ: Champion,
    frames: dict[str, pd.DataFrame],
    ds: str,
    window: int,
    policy: Policy,
    today: dict[str, Any],
) -> list[dict[str, Any]]:
    """The dataset verdicts of the ``persistence`` windows ending at ``ds``, ``ds - 1``, ...
    (oldest first), for :func:`dslc.monitoring.drift_policy.decide`.

    Earlier windows are scored again here, from their features, against this champion and
    policy (not read from earlier reports): the decision is then the same whatever order the
    days run in (a backfill, a re-run) and a new champion does not inherit its predecessor's
    verdicts. A window without published features counts as not drifted.
    """
    from dslc.monitoring import policy as drift_policy
    from dslc.monitoring import statistics

    last = dt.date.fromisoformat(day(ds))
    out: list[dict[str, Any]] = []
    for back in range(policy.persistence - 1, 0, -1):
        end = (last - dt.timedelta(days=back)).isoformat()
        frame = _window_frame(frames, window_days(end, window))
        if frame is None:
            out.append({"ds": end, "drifted": False, "note": "no published features"})
            continue
        verdict = drift_policy.dataset_verdict(
            statistics.score(champ.profile, frame), policy, champ.profile.get("importance")
        )
        out.append({"ds": end, "drifted": bool(verdict["drifted"]), "share": verdict["share"]})
    out.append({"ds": day(ds), "drifted": bool(today["drifted"]), "share": today["share"]})
    return out


def _read_prediction_files(lake: Lake, model: str, ds: str) -> pd.DataFrame | None:
    """The serving log of one day, read directly (contract: part-*.parquet, atomic files)."""
    import io

    import pandas as pd
    import pyarrow.parquet as pq

    key = f"predictions/{model}/ds={ds}"
    names = [n for n in lake.ls(key) if n.endswith(".parquet") and not n.startswith(".")]
    if not names:
        return None
    frames = [pq.read_table(io.BytesIO(lake.read_bytes(key, n))).to_pandas() for n in names]
    return pd.concat(frames, ignore_index=True)


def load_predictions(lake: Lake, model: str, days: list[str]) -> pd.DataFrame | None:
    """The serving prediction log of ``days`` (None when nothing was logged)."""
    import pandas as pd

    reader: Any = _read_prediction_files
    try:
        from dslc.serving.predlog import read_predictions  # the serving side's reader

        reader = read_predictions
    except ImportError:
        pass
    frames = []
    for d in days:
        df = reader(lake, model, d)
        if df is not None and len(df):
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else None


def _key_dtype(column: pd.Series) -> str:
    """The dtype both sides of the label join cast a key column to."""
    import pandas as pd

    if pd.api.types.is_integer_dtype(column):
        return "int64"
    if pd.api.types.is_float_dtype(column):
        return "float64"
    return "string"


def join_labels(
    predictions: pd.DataFrame, features: pd.DataFrame, version: str
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Labels and the champion's probabilities for the logged rows whose label is known.

    Rows are matched on the feature table's key (for flights: ds, carrier, flight, origin).
    Only rows logged by champion ``version`` count; a row predicted several times counts
    once, with its latest prediction. Returns (y, p, row counts).
    """
    import pandas as pd

    from dslc.settings import get_usecase

    spec = get_usecase().features
    key, label = list(spec.key), spec.label
    types = {col: _key_dtype(features[col]) for col in key}

    counts: dict[str, Any] = {"logged": len(predictions)}
    versions = predictions["model_version"].astype("string")
    counts["by_version"] = {str(k): int(v) for k, v in versions.value_counts().sort_index().items()}
    pred = predictions.loc[versions == str(version)].copy()
    counts["champion"] = len(pred)
    for col, kind in types.items():
        if kind != "string":
            pred[col] = pd.to_numeric(pred[col], errors="coerce")
    keyed = pred.dropna(subset=key)
    counts["without_key"] = len(pred) - len(keyed)
    if "request_time" in keyed:
        keyed = keyed.sort_values("request_time", kind="stable")
    keyed = keyed.drop_duplicates(key, keep="last")
    left = keyed.loc[:, [*key, "probability"]].astype(types)
    right = features.loc[:, [*key, label]].astype(types)
    joined = left.merge(right, on=key, how="inner")
    counts["labelled"] = len(joined)
    y = joined[label].to_numpy(dtype="int64")
    p = joined["probability"].to_numpy(dtype="float64")
    return y, p, counts


# -- compute: the day's report ---------------------------------------------------------------


def _performance(
    lake: Lake, champ: Champion, days: list[str], features: pd.DataFrame, policy: Policy
) -> dict[str, Any]:
    from dslc.monitoring import policy as drift_policy

    preds = load_predictions(lake, champ.name, days)
    if preds is None:
        return {"drifted": False, "rows": 0, "note": "no prediction log for the window"}
    y, p, counts = join_labels(preds, features, champ.version)
    if "roc_auc" not in champ.holdout:
        return {
            "drifted": False,
            "rows": len(y),
            "counts": counts,
            "note": f"version {champ.version} has no holdout_roc_auc to compare with",
        }
    result = drift_policy.performance(y, p, champ.holdout, policy)
    return {**result, "counts": counts, "reference": dict(champ.holdout)}


def compute(
    lake: Lake,
    champ: Champion,
    *,
    ds: str,
    window: int,
    policy: Policy,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Score the window ending at ``ds`` against the champion; write and return the report."""
    from dslc.monitoring import policy as drift_policy
    from dslc.monitoring import statistics
    from dslc.settings import get_settings

    dataset = dataset or get_settings().dataset

    days = window_days(ds, window)
    # The window and the ones before it that the persistence rule looks at, each read once.
    frames = load_days(lake, dataset, window_days(ds, window + policy.persistence - 1))
    features = _window_frame(frames, days)
    if features is None:
        raise DriftMonitorError(
            f"no published feature partition in {days[0]}..{days[-1]} at "
            f"{lake.uri('features', dataset)}: run `ingest` for those days first"
        )
    present = [d for d in days if d in frames]
    scores = statistics.score(champ.profile, features)
    verdicts = drift_policy.feature_verdicts(scores, policy)
    dataset_verdict = drift_policy.dataset_verdict(scores, policy, champ.profile.get("importance"))
    perf = _performance(lake, champ, days, features, policy)
    verdicts_over_days = verdict_history(champ, frames, ds, window, policy, dataset_verdict)
    decision = drift_policy.decide(verdicts_over_days, policy, perf)
    report = {
        "schema": REPORT_SCHEMA,
        "ds": day(ds),
        "window": {
            "first": days[0],
            "last": days[-1],
            "days": window,
            "present": present,
            "missing": [d for d in days if d not in present],
        },
        "reference": {
            "model": champ.name,
            "version": champ.version,
            "run_id": champ.run_id,
            "profile_rows": champ.profile.get("rows"),
            "holdout": champ.holdout,
        },
        "rows": {
            "current": len(features),
            "reference": champ.profile.get("rows"),
            "labelled": perf.get("rows", 0),
        },
        "policy": asdict(policy),
        "features": {col: {**scores[col], **verdicts[col]} for col in scores},
        "dataset": dataset_verdict,
        "performance": perf,
        "history": verdicts_over_days,
        "decision": decision,
    }
    lake.write_text(dumps(report), report_key(ds), REPORT_JSON)
    log.info(
        "drift %s vs %s v%s: %s (%d of %d features drifted); policy: %s",
        day(ds),
        champ.name,
        champ.version,
        "DRIFT" if dataset_verdict["drifted"] else "stable",
        len(dataset_verdict["drifted_features"]),
        len(scores),
        decision["reason"],
    )
    out: dict[str, Any] = json.loads(dumps(report))
    return out


# -- guards ----------------------------------------------------------------------------------


def parse_switch(value: Any, source: str) -> bool:
    """A kill-switch value (bool, or true/false/1/0/yes/no/on/off) as a bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise DriftMonitorError(
        f"{source}={value!r} is not a boolean: set it to true or false (retraining stays "
        "off until it is fixed)"
    )


def retrain_switch(param: Any, variable: Any, setting: bool) -> tuple[bool, str]:
    """Whether retraining is enabled, and which knob said so.

    The most specific wins: the run's ``retrain`` Param (when set), else the Airflow Variable
    ``dslc_drift_retrain_enabled`` (when it exists), else ``DSLC_DRIFT_RETRAIN_ENABLED``.
    """
    if param is not None:
        return parse_switch(param, "param 'retrain'"), "param 'retrain'"
    if variable is not None:
        return (
            parse_switch(variable, "Variable dslc_drift_retrain_enabled"),
            "Variable dslc_drift_retrain_enabled",
        )
    return bool(setting), "setting DSLC_DRIFT_RETRAIN_ENABLED"


def trigger_records(lake: Lake) -> list[dict[str, Any]]:
    """Every retrain the monitor triggered (oldest day first)."""
    out = []
    for name in lake.ls(TRIGGERS):
        if name.endswith(".json") and not name.startswith("."):
            out.append(json.loads(lake.read_text(TRIGGERS, name)))
    return sorted(out, key=lambda r: (r["ds"], str(r["version"])))


def _record_name(ds: str, version: str) -> str:
    return f"ds={day(ds)}__v{version}.json"


def write_trigger_record(lake: Lake, record: dict[str, Any]) -> str:
    """Record a triggered retrain (idempotent: one record per day and version)."""
    name = _record_name(record["ds"], str(record["version"]))
    if not lake.exists(TRIGGERS, name):
        lake.write_text(dumps(record), TRIGGERS, name)
    return lake.uri(TRIGGERS, name)


def cooldown_blocker(
    records: list[dict[str, Any]], ds: str, cooldown_days: int
) -> dict[str, Any] | None:
    """The triggered retrain within ``cooldown_days`` of ``ds`` in data time, if any.

    Both directions count: re-running an earlier day after a later one triggered must not
    trigger again within the cooldown either.
    """
    from dslc.monitoring.policy import cooldown_ok

    today = dt.date.fromisoformat(day(ds))
    before = [r for r in records if r["ds"] <= day(ds)]
    after = [r for r in records if r["ds"] > day(ds)]
    if before and not cooldown_ok(before[-1]["ds"], today, cooldown_days):
        return before[-1]
    for r in after:
        if (dt.date.fromisoformat(r["ds"]) - today).days < cooldown_days:
            return r
    return None


@dataclass(frozen=True)
class Facts:
    """What only Airflow knows, gathered by the DAG before :func:`evaluate_guards`."""

    train_in_flight: int
    """``train`` runs queued or running."""
    run_exists: bool
    """A ``train`` run with this day's deterministic run id exists already."""


def evaluate_guards(
    *,
    policy_decision: dict[str, Any],
    ds: str,
    version: str,
    retrain_enabled: bool,
    switch_source: str,
    facts: Facts,
    records: list[dict[str, Any]],
    cooldown_days: int,
) -> dict[str, Any]:
    """Apply every guard to the policy's verdict; ``trigger`` only if none blocks.

    All guards are evaluated (not just the first that blocks), so the decision says
    everything that stood in the way.
    """
    blocked: list[str] = []
    same = [r for r in records if r["ds"] == day(ds) and str(r["version"]) == str(version)]
    if same or facts.run_exists:
        blocked.append(
            f"already triggered for version {version} and day {day(ds)} "
            f"(train run {trigger_run_id(ds, version)})"
        )
    if not retrain_enabled:
        blocked.append(f"retraining is switched off ({switch_source})")
    if facts.train_in_flight:
        blocked.append(f"{facts.train_in_flight} `{TRAIN_DAG}` run(s) queued or running")
    others = [r for r in records if not (r["ds"] == day(ds) and str(r["version"]) == str(version))]
    cool = cooldown_blocker(others, ds, cooldown_days)
    if cool is not None:
        blocked.append(
            f"cooldown: a retrain was triggered for {cool['ds']} (version {cool['version']}), "
            f"within {cooldown_days} day(s) of {day(ds)}"
        )
    wanted = bool(policy_decision.get("retrain"))
    return {
        "policy": policy_decision,
        "wanted": wanted,
        "blocked_by": blocked if wanted else [],
        "also_true": [] if wanted else blocked,
        "trigger": wanted and not blocked,
        "retrain_enabled": retrain_enabled,
        "switch_source": switch_source,
    }


def drifted_summary(report: dict[str, Any], limit: int = 20) -> list[str]:
    """``feature:statistic=value`` for the drifted features, most drifted first (for conf)."""
    out = []
    for d in report["dataset"]["drifted_features"][:limit]:
        crossed = d.get("crossed") or []
        if crossed:
            first = crossed[0]
            out.append(f"{d['feature']}:{first['statistic']}={first['value']:.4g}")
        else:
            out.append(str(d["feature"]))
    return out


def train_conf(
    report: dict[str, Any], *, report_uri: str, train_window_days: int
) -> dict[str, Any]:
    """The ``train`` run's conf: why, what drifted, where the report is, which window."""
    policy_reason = report["decision"]["reason"]
    version = str(report["reference"]["version"])
    return {
        "reason": f"drift_monitor {report['ds']}: {policy_reason} (champion v{version})"[:500],
        "window_end": report["ds"],
        "window_days": int(train_window_days),
        "report_uri": report_uri,
        "drifted_features": drifted_summary(report),
        "champion_version": version,
        "drift_window": f"{report['window']['first']}..{report['window']['last']}",
    }


# Airflow keeps at most this many characters of a DAG run note.
NOTE_CHARS = 1000


def run_note(conf: dict[str, Any], top: int = 5) -> str:
    """The triggered ``train`` run's note (Markdown, shown on the run in Airflow's UI): why it
    was triggered, the most drifted features and where the report is."""
    drifted = conf.get("drifted_features") or []
    lines = [f"**Retrain triggered by drift.** {conf['reason']}"]
    if drifted:
        more = f" and {len(drifted) - top} more" if len(drifted) > top else ""
        lines.append(f"Most drifted: {', '.join(f'`{f}`' for f in drifted[:top])}{more}.")
    lines.append(f"Drift window {conf.get('drift_window', '?')}; report: {conf['report_uri']}")
    note = "\n\n".join(lines)
    return note if len(note) <= NOTE_CHARS else note[: NOTE_CHARS - 3] + "..."


def decide(
    lake: Lake,
    *,
    ds: str,
    retrain_enabled: bool,
    switch_source: str,
    facts: Facts,
    train_window_days: int,
) -> dict[str, Any]:
    """The ``decide`` step: the report's policy verdict through the guards, written as
    ``decision.json``. Returns it, with ``run_id`` and ``conf`` when a retrain goes ahead."""
    report = read_report(lake, ds)
    if report is None:
        raise DriftMonitorError(
            f"no drift report at {lake.uri(report_key(ds), REPORT_JSON)}: run compute_drift "
            "for this day first (clear the whole run)"
        )
    version = str(report["reference"]["version"])
    records = trigger_records(lake)
    run_id = trigger_run_id(ds, version)
    if facts.run_exists and not any(
        r["ds"] == day(ds) and str(r["version"]) == version for r in records
    ):
        # Triggered earlier but the record was never written (the lake failed after the
        # trigger): write it now, so the cooldown sees it.
        write_trigger_record(lake, {"ds": day(ds), "version": version, "run_id": run_id})
        records = trigger_records(lake)
    decision = evaluate_guards(
        policy_decision=report["decision"],
        ds=ds,
        version=version,
        retrain_enabled=retrain_enabled,
        switch_source=switch_source,
        facts=facts,
        records=records,
        cooldown_days=int(report["policy"]["cooldown_days"]),
    )
    decision |= {"ds": day(ds), "version": version, "run_id": run_id}
    if decision["trigger"]:
        report_uri = lake.uri(report_key(ds), REPORT_HTML)
        decision["conf"] = train_conf(
            report, report_uri=report_uri, train_window_days=train_window_days
        )
    lake.write_text(dumps(decision), report_key(ds), DECISION_JSON)
    return decision


# -- MLflow ----------------------------------------------------------------------------------


def _metrics(report: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {
        "drift.dataset_drifted": float(report["dataset"]["drifted"]),
        "drift.share_drifted": float(report["dataset"]["share"]),
        "drift.n_drifted": float(len(report["dataset"]["drifted_features"])),
        "drift.rows": float(report["rows"]["current"]),
        "drift.retrain_wanted": float(report["decision"]["retrain"]),
    }
    for col, s in report["features"].items():
        for stat in ("psi", "js", "wasserstein", "missing_delta", "unseen_share"):
            value = s.get(stat)
            if value is not None:
                out[f"{stat}.{col}"] = float(value)
    perf = report.get("performance") or {}
    for k in ("roc_auc", "log_loss", "auc_drop"):
        if perf.get(k) is not None:
            out[f"performance.{k}"] = float(perf[k])
    return out


def log_to_mlflow(
    report: dict[str, Any], html: str, tracking_uri: str | None = None
) -> dict[str, str]:
    """Log the day to the champion version's drift run (one per version, found by tags).

    Metrics are stepped by day (step = days since 1970-01-01, timestamp = the day at 00:00
    UTC), so MLflow charts PSI over time and a re-run of a day logs nothing new. The day's
    report and page are artifacts under ``ds=<ds>/``; the model version gets
    ``dslc.drift.*`` tags pointing at the latest day scored.
    """
    from mlflow.entities import Metric

    from dslc.model import registry

    name, version = report["reference"]["model"], str(report["reference"]["version"])
    ds = report["ds"]
    when = dt.datetime.fromisoformat(ds).replace(tzinfo=dt.UTC)
    step = (when.date() - dt.date(1970, 1, 1)).days
    stamp = int(when.timestamp() * 1000)
    uri = registry.resolve_tracking_uri(tracking_uri)
    c = registry.client(uri)
    with registry.reporting(uri, f"log drift of {name} v{version} for {ds}"):
        exp = registry.experiment_id(c, MLFLOW_EXPERIMENT)
        found = c.search_runs(
            [exp],
            filter_string=(
                f"tags.`dslc.model_name` = {registry.filter_value(name)} and "
                f"tags.`dslc.model_version` = {registry.filter_value(version)}"
            ),
            order_by=["attributes.start_time ASC"],
            max_results=1,
        )
        finished = bool(found) and found[0].info.status == "FINISHED"
        if found:
            run_id = found[0].info.run_id
        else:
            run_id = c.create_run(
                exp,
                run_name=f"drift of {name} v{version}",
                tags={
                    "dslc.model_name": name,
                    "dslc.model_version": version,
                    "dslc.champion_run_id": str(report["reference"]["run_id"]),
                },
            ).info.run_id
        metrics = [Metric(k, v, stamp, step) for k, v in sorted(_metrics(report).items())]
        for i in range(0, len(metrics), 500):
            c.log_batch(run_id, metrics=metrics[i : i + 500])
        c.log_text(run_id, dumps(report), f"ds={ds}/{REPORT_JSON}")
        c.log_text(run_id, html, f"ds={ds}/{REPORT_HTML}")
        mv = c.get_model_version(name, version)
        last = mv.tags.get("dslc.drift.last_ds", "")
        if ds >= last:  # a backfill of older days does not move "latest"
            verdict = "drift" if report["dataset"]["drifted"] else "stable"
            for key, value in (
                ("dslc.drift.last_ds", ds),
                ("dslc.drift.last_verdict", verdict),
                ("dslc.drift.run_id", run_id),
            ):
                if mv.tags.get(key) != value:  # one request per tag: only the changed ones
                    c.set_model_version_tag(name, version, key, value)
        if not finished:
            c.set_terminated(run_id, "FINISHED")
    return {"run_id": run_id, "experiment_id": exp, "tracking_uri": uri}
