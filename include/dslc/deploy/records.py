"""Deployment records: who deployed which version where, when, and what the smoke test said.

Each attempt is one JSON object in the lake at
``deployments/<model>/<UTC timestamp>-v<version>.json`` (written atomically), and a short
summary in the model version's ``dslc.deployment`` tag, so MLflow shows the last deployment of
every version and the lake keeps the history.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from dslc.lake import Lake

log = logging.getLogger(__name__)

ZONE = "deployments"
TAG = "dslc.deployment"
# The deploy in progress, rewritten (atomically) before each of its steps and removed once its
# record is written: a deploy killed at any step leaves it behind for reconcile() to repair.
# The leading "_" keeps it out of list_records.
INTENT = "_intent.json"


def key(model: str, version: str, at: dt.datetime) -> str:
    """The record's lake key: ``deployments/<model>/20130401T120000.123456Z-v3.json``."""
    stamp = at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{ZONE}/{model}/{stamp}-v{version}.json"


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """The short form kept in the version's tag."""
    smoke = record.get("smoke") or {}
    return {
        "status": record["status"],
        "target": record["target"],
        "at": record.get("finished_at"),
        "actor": record["actor"],
        "smoke": (
            None
            if not smoke
            else {k: smoke.get(k) for k in ("passed", "rows", "max_abs_diff", "version_seen")}
        ),
        "stage": record.get("stage"),
        "record": record.get("record_uri"),
    }


def list_records(lake: Lake, model: str) -> list[dict[str, Any]]:
    """Every deployment record of ``model``, oldest first."""
    return [
        json.loads(lake.read_text(ZONE, model, name))
        for name in lake.ls(ZONE, model)
        if name.endswith(".json") and not name.startswith("_")
    ]


def last_record(lake: Lake, model: str) -> dict[str, Any] | None:
    """The newest deployment record of ``model`` (keys sort by time), or None."""
    names = [n for n in lake.ls(ZONE, model) if n.endswith(".json") and not n.startswith("_")]
    if not names:
        return None
    last: dict[str, Any] = json.loads(lake.read_text(ZONE, model, names[-1]))
    return last


def write_intent(lake: Lake, model: str, intent: dict[str, Any]) -> None:
    """Record the step a deploy is about to take (one atomic write, replacing the last)."""
    lake.write_text(json.dumps(intent, indent=2, sort_keys=True, default=str), ZONE, model, INTENT)


def read_intent(lake: Lake, model: str) -> dict[str, Any] | None:
    """The intent an interrupted deploy left behind, or None."""
    if not lake.exists(ZONE, model, INTENT):
        return None
    intent: dict[str, Any] = json.loads(lake.read_text(ZONE, model, INTENT))
    return intent


def clear_intent(lake: Lake, model: str) -> None:
    lake.delete(ZONE, model, INTENT)


def save(
    lake: Lake,
    c: MlflowClient,
    record: dict[str, Any],
    *,
    started_at: dt.datetime,
    seconds: float,
    strict: bool = False,
) -> str | None:
    """Write ``record`` to the lake and tag the version; returns the record's URI.

    strict: raise :class:`~dslc.deploy.DeployError` if either write fails (a successful deploy
    must leave its record); otherwise (the record of a failure, whose error is already being
    raised) warn and go on.
    """
    from dslc.deploy.target import DeployError

    record["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
    record["seconds"] = round(seconds, 3)
    k = key(record["model"], record["version"], started_at)
    record["record_uri"] = uri = lake.uri(k)
    problems, written = [], True
    try:
        lake.write_text(json.dumps(record, indent=2, sort_keys=True, default=str), k)
    except Exception as e:  # the lake may be down: say so, never hide the deploy's own error
        written = False
        problems.append(f"the record could not be written to {uri}: {type(e).__name__}: {e}")
    try:
        c.set_model_version_tag(
            record["model"], record["version"], TAG, json.dumps(summary(record), default=str)
        )
    except Exception as e:
        problems.append(f"the {TAG} tag could not be set: {type(e).__name__}: {e}")
    if problems and strict:
        raise DeployError(
            f"{record['model']} version {record['version']} was deployed to {record['target']} "
            f"and passed its smoke test, but {'; '.join(problems)}. The service is fine; clear "
            "the task once the lake/MLflow is reachable to record the deployment"
        )
    for p in problems:
        log.warning("deployment record: %s", p)
    return uri if written else None


def failure_message(record: dict[str, Any], uri: str | None) -> str:
    """What a failed deploy says: what failed, what was rolled back, where the record is."""
    rb = record.get("rollback") or {}
    head = (
        f"deploy of {record['model']} version {record['version']} to {record['target']} "
        f"({record['endpoint']}) failed at the {record['stage']}: {record['error']}."
    )
    if rb.get("ok"):
        tail = f" Rolled back: service: {rb.get('service')}; alias: {rb.get('alias')}."
    else:
        tail = (
            f" ROLLBACK INCOMPLETE, check by hand: service: {rb.get('service')}; "
            f"alias: {rb.get('alias')}."
        )
    where = f" Record: {uri}" if uri else " (the deployment record could not be written)"
    return head + tail + where
