"""Undoing a deploy: :func:`rollback` (a deploy that failed) and :func:`reconcile` (one that died).

A deploy killed outright (SIGKILL, a lost worker) runs no ``except`` or ``finally``. What it
leaves instead is its *intent* (:func:`dslc.deploy.records.write_intent`): the record so far and
the step it was about to take, rewritten before every step. :func:`reconcile` reads it and

* finishes the deploy when it had passed its smoke test and the service and ``champion`` both
  show the version (only the record was missing);
* hands it to the next deploy of the same version (``resume``), which redoes the rollout and
  the smoke test;
* otherwise rolls it back exactly as a failure would be (service, then ``champion``), and
  writes the record the dead process could not.

Then, unless a deploy is about to run, it checks that the target serves the ``champion`` and
says loudly (naming both versions and the fix) when it does not.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dslc.deploy.target import DeployError, Target

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from dslc.lake import Lake

log = logging.getLogger(__name__)

# The steps of a deploy, in order; the intent names the one being taken.
ALIASES = "aliases"  # moving champion (manual deploy); the service is not touched yet
ROLLOUT = "rollout"
SMOKE = "smoke test"
RECORD = "record"  # the smoke test passed; writing the record
ROLLBACK = "rollback"
ROLLBACK_ALIAS = "rollback alias"  # the service is back; restoring champion next

Step = Callable[[str], None]


def no_step(step: str) -> None:
    """The default ``on_step``: nothing happens between steps (tests pass a killer)."""


def rollback(
    target: Target,
    c: MlflowClient,
    name: str,
    version: str,
    *,
    service_previous: str | None,
    alias_previous: str | None,
    restore: dict[str, str | None],
    service: bool = True,
    on_step: Step = no_step,
) -> dict[str, Any]:
    """Roll the target and the alias back; each half is attempted even if the other fails.

    service: False when the service was never touched (only the alias is restored).
    """
    from dslc.model import registry

    out: dict[str, Any] = {"ok": True}
    try:
        out["service"] = (
            target.rollback(name, version, service_previous)
            if service
            else "not touched (the deploy had not reached its rollout)"
        )
    except Exception as e:  # reported in the record and the error message
        out["ok"] = False
        out["service"] = f"ROLLBACK FAILED: {type(e).__name__}: {e}"
    on_step(ROLLBACK_ALIAS)
    try:
        out["alias"] = registry.restore_champion(c, name, version, alias_previous, restore)
    except Exception as e:  # reported too
        out["ok"] = False
        out["alias"] = f"ALIAS RESTORE FAILED: {type(e).__name__}: {e}"
    return out


def mismatch_message(
    name: str,
    champion: str | None,
    serving: str | None,
    target: Target,
    last: dict[str, Any] | None,
) -> str:
    """Champion and service disagree and no interrupted deploy explains it: say what to do."""
    where = f"the {target.name} service at {target.endpoint}"
    seen = (
        f" The last deployment record: version {last.get('version')} {last.get('status')} at "
        f"{last.get('finished_at')} by {last.get('actor')}."
        if last
        else ""
    )
    if champion is None:
        return (
            f"{name} has no champion alias, but {where} serves version {serving}.{seen} To make "
            f"what is served the champion, trigger the `deploy` DAG with version={serving}"
        )
    if serving is None:
        return (
            f"the champion of {name} is version {champion}, but {where} serves nothing.{seen} "
            f"Trigger the `deploy` DAG with version={champion} to serve it"
        )
    return (
        f"the champion of {name} is version {champion}, but {where} serves version {serving}, "
        f"and no interrupted deploy explains it (the alias was moved by hand, or a deploy was "
        f"skipped).{seen} To serve the champion, trigger the `deploy` DAG with "
        f"version={champion}; to keep what is served, trigger it with version={serving} (it "
        f"moves champion back there)"
    )


def _started(record: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(str(record["started_at"]))


def _seconds(record: dict[str, Any]) -> float:
    return (dt.datetime.now(dt.UTC) - _started(record)).total_seconds()


def _repair(
    intent: dict[str, Any],
    *,
    target: Target,
    lake: Lake,
    c: MlflowClient,
    actor: str,
    resume: str | None,
    on_step: Step,
) -> dict[str, Any]:
    """Finish, hand over or roll back the deploy ``intent`` describes; what was done."""
    import dslc.deploy.records as records
    from dslc.model import registry

    rec: dict[str, Any] = dict(intent["record"])
    name, version, step = rec["model"], str(rec["version"]), str(intent["step"])
    restore: dict[str, str | None] = dict(intent.get("restore") or {})
    # A load the dead process started may still run in the service: let it end first.
    target.settle()
    champion, _ = registry.champion_state(c, name)
    serving = target.current_version(name)
    log.warning(
        "found an interrupted deploy of %s version %s (died during the %s; champion: %s, "
        "serving: %s)",
        name,
        version,
        step,
        champion,
        serving,
    )
    done = {"version": version, "step": step, "started_at": rec["started_at"]}
    rec["reconciled_by"] = actor
    if step == RECORD and champion == version and serving == version:
        if not lake.exists(records.key(name, version, _started(rec))):
            rec.update(
                status="deployed",
                note="the deploy process died after its smoke test passed, before it recorded "
                "the deployment; reconcile wrote this record",
            )
            records.save(lake, c, rec, started_at=_started(rec), seconds=_seconds(rec), strict=True)
        records.clear_intent(lake, name)
        return {**done, "action": "finished", "record_uri": rec.get("record_uri")}
    if resume == version and step not in (ROLLBACK, ROLLBACK_ALIAS) and champion == version:
        rec.update(
            status="interrupted",
            stage=step,
            error=f"the deploy process died during the {step}; the next deploy of version "
            f"{version} redoes it",
        )
        records.save(lake, c, rec, started_at=_started(rec), seconds=_seconds(rec))
        records.clear_intent(lake, name)
        return {**done, "action": "resumed", "restore": restore, "previous": rec["previous"]}
    # Roll back. The intent says so first, so a reconcile killed half-way is redone next time.
    if step not in (ROLLBACK, ROLLBACK_ALIAS):
        rec["stage"] = step
        rec["error"] = f"the deploy process died during the {step}"
    else:
        rec["error"] = f"{rec.get('error')}; the deploy process died during the {step}"
    records.write_intent(lake, name, {**intent, "record": rec, "step": ROLLBACK})
    on_step(ROLLBACK)
    before = rec.get("serving_before")
    rec["rollback"] = rb = rollback(
        target,
        c,
        name,
        version,
        service_previous=before if before not in (None, version) else rec["previous"],
        alias_previous=rec["previous"],
        restore=restore,
        service=step != ALIASES,
        on_step=on_step,
    )
    rec["status"] = "rolled_back" if rb["ok"] else "rollback_failed"
    rec["error"] += "; reconcile rolled it back"
    uri = records.save(lake, c, rec, started_at=_started(rec), seconds=_seconds(rec))
    records.clear_intent(lake, name)
    if not rb["ok"]:
        raise DeployError(records.failure_message(rec, uri), rec)
    return {**done, "action": "rolled_back", "rollback": rb, "record_uri": uri, "record": rec}


def reconcile(
    model_name: str,
    *,
    target: Target,
    lake: Lake,
    actor: str = "reconcile",
    strict: bool = True,
    resume: str | None = None,
    repair: bool = True,
    tracking_uri: str | None = None,
    on_step: Step = no_step,
) -> dict[str, Any]:
    """Repair what a killed deploy of ``model_name`` left behind, then check that ``target``
    serves the ``champion``; returns what was found and done (``status``, ``champion``,
    ``serving``, ``interrupted``).

    strict: raise :class:`DeployError` when the service and ``champion`` disagree with no
        interrupted deploy to explain it (else log a warning and report ``mismatch``).
    resume: the version a deploy is about to deploy: an interrupted deploy of it is handed
        over (not rolled back), and the final check is left to that deploy.
    repair: False leaves an interrupted deploy alone (status ``pending``): a run in flight
        (an Airflow retry of the deploy task) will take it over.
    A model with no deployment record and no intent was never deployed by dslc: nothing to
    check (``status`` ``never_deployed``), and the target is not contacted.
    """
    import dslc.deploy.records as records
    from dslc.model import registry

    out: dict[str, Any] = {"status": "in_sync", "interrupted": None, "message": ""}
    intent = records.read_intent(lake, model_name)
    c = registry.client(tracking_uri)
    if intent is not None and not repair:
        rec = intent["record"]
        out["status"] = "pending"
        out["message"] = (
            f"a deploy of {model_name} version {rec['version']} (started {rec['started_at']} by "
            f"{rec['actor']}) died during the {intent['step']}; left for the run in flight to "
            "take over"
        )
        log.warning("%s", out["message"])
        return out
    if intent is not None:
        out["interrupted"] = _repair(
            intent, target=target, lake=lake, c=c, actor=actor, resume=resume, on_step=on_step
        )
    if resume is not None:
        out["status"] = "handed_over" if intent is not None else "nothing_interrupted"
        return out
    last = records.last_record(lake, model_name)
    if intent is None and last is None:
        out["status"] = "never_deployed"
        out["message"] = f"no deployment of {model_name} recorded: nothing to reconcile"
        return out
    champion, _ = registry.champion_state(c, model_name)
    serving = target.current_version(model_name)
    out.update(champion=champion, serving=serving)
    if champion == serving:
        out["status"] = "repaired" if intent is not None else "in_sync"
        out["message"] = f"{target.name} serves the champion of {model_name}: version {serving}"
        return out
    out["status"] = "mismatch"
    out["message"] = message = mismatch_message(model_name, champion, serving, target, last)
    if strict:
        raise DeployError(message)
    log.warning("%s", message)
    return out
