"""Deploy a registered model version to a serving target, smoke-test it, roll back on failure.

:func:`deploy` is the whole procedure, the same for every target:

1. check the ``champion`` alias: it must point at the version being deployed (``train``'s
   ``promote`` moved it), or, with ``move_alias`` (the manual ``deploy`` DAG), it is moved
   there first (``previous_champion`` <- old champion);
2. the target rolls the version out (:class:`~dslc.deploy.local.LocalTarget`: the running
   service loads it; :class:`~dslc.deploy.kubernetes.KubernetesTarget`: a Deployment pinned to
   it rolls out) and waits until it serves it;
3. the smoke test (:mod:`dslc.deploy.smoke`) sends holdout rows through ``/predict`` and
   compares the answers with the registered model's offline predictions (within 1e-9);
4. on any failure the target goes back to what it served before, ``champion`` goes back to the
   previous version (only if it still points at the failed one), and :class:`DeployError` says
   what failed and what was restored.

Every attempt leaves a record (:mod:`dslc.deploy.records`): JSON in the lake under
``deployments/<model>/`` and a short ``dslc.deployment`` tag on the model version.

A deploy killed outright (SIGKILL: no ``except`` runs) is repaired by the next one: before each
step it rewrites its *intent* in the lake, and every deploy first runs
:func:`~dslc.deploy.recovery.reconcile`, which finishes, resumes or rolls back what the intent
describes (the ``drift_monitor`` DAG runs it too, before it scores the champion).
Nothing here imports Airflow; ``dslc_airflow.deploy`` builds the targets inside tasks.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any

from dslc.deploy.recovery import Step, no_step, reconcile
from dslc.deploy.target import DeployError, Target

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from dslc.lake import Lake

log = logging.getLogger(__name__)

__all__ = ["DeployError", "Target", "deploy", "reconcile"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _plan_aliases(
    c: MlflowClient,
    name: str,
    version: str,
    *,
    move_alias: bool,
    previous: str | None,
    handed: dict[str, Any],
) -> tuple[str | None, str | None, dict[str, str | None]]:
    """The champion now, the version to go back to on failure, and the aliases to restore.

    Raises :class:`DeployError` when ``champion`` is not ``version`` and may not be moved.
    """
    from dslc.model import registry

    champion, prev_alias = registry.champion_state(c, name)
    if champion != version and not move_alias:
        raise DeployError(
            f"the {registry.CHAMPION} alias of {name!r} points at version {champion}, not "
            f"{version}: only the champion is deployed from `train` (another run or a "
            f"rollback moved it meanwhile). Nothing was changed. To serve version "
            f"{version} anyway, trigger the `deploy` DAG with version={version}"
        )
    moving = champion != version
    # What champion was before this deploy (or promote) moved it: the caller's answer, else
    # what an interrupted attempt of this version recorded, else the alias being replaced or
    # previous_champion.
    alias_previous = previous or handed.get("previous") or (champion if moving else prev_alias)
    restore: dict[str, str | None] = (
        {registry.CHAMPION: champion, registry.PREVIOUS: prev_alias}
        if moving
        else dict(handed.get("restore") or {})
    )
    return champion, alias_previous, restore


def deploy(
    model_name: str,
    version: str | int,
    *,
    target: Target,
    lake: Lake,
    actor: str,
    reason: str = "",
    previous: str | None = None,
    move_alias: bool = False,
    smoke_rows: int | None = None,
    tracking_uri: str | None = None,
    on_step: Step = no_step,
) -> dict[str, Any]:
    """Deploy ``model_name`` version ``version`` to ``target``; returns the deployment record.

    previous: the version to go back to on failure (default: ``previous_champion``, or the
        old champion when ``move_alias`` moves it).
    move_alias: move ``champion`` to ``version`` first (manual deploy / rollback); without it
        ``champion`` must already point at ``version``.
    on_step: called with each step's name once its intent is written, before the step runs
        (the tests kill the process there).
    Raises :class:`DeployError` (after rolling back) when the deploy fails.
    """
    from dslc.deploy import records, recovery, smoke
    from dslc.model import registry
    from dslc.settings import get_settings

    settings = get_settings()
    version = str(version)
    c = registry.client(tracking_uri)
    registry.get_version(c, model_name, version)  # RegistryError naming a missing version
    # A deploy killed earlier is repaired first (or, if it was of this version, handed over).
    found = reconcile(
        model_name,
        target=target,
        lake=lake,
        actor=actor,
        resume=version,
        tracking_uri=tracking_uri,
        on_step=on_step,
    )
    handed: dict[str, Any] = found["interrupted"] or {}
    started, t0 = _now(), time.monotonic()
    champion, alias_previous, restore = _plan_aliases(
        c,
        model_name,
        version,
        move_alias=move_alias,
        previous=previous,
        handed=handed if handed.get("action") == "resumed" else {},
    )
    moving = champion != version
    record: dict[str, Any] = {
        "model": model_name,
        "version": version,
        "previous": alias_previous,
        "target": target.name,
        "endpoint": target.endpoint,
        "actor": actor,
        "reason": reason,
        "started_at": started.isoformat(),
        "status": None,
        "stage": None,
        "error": None,
        "serving_before": None,
        "smoke": None,
        "rollback": None,
    }

    def step(name: str) -> None:
        try:
            records.write_intent(
                lake, model_name, {"step": name, "record": record, "restore": restore}
            )
        except Exception as e:
            raise DeployError(
                f"could not write the deploy's intent before its {name} to "
                f"{lake.uri(records.ZONE, model_name)} ({type(e).__name__}: {e}); without it a "
                "deploy killed half-way could not be repaired, so it stops here. Make the lake "
                "(DSLC_LAKE_URL) writable and deploy again"
            ) from e
        on_step(name)

    if moving:
        step(recovery.ALIASES)
        try:
            registry.move_champion(c, model_name, version, expected=champion)
        except registry.PromotionConflictError:
            records.clear_intent(lake, model_name)  # nothing moved: nothing to repair
            raise
    stage, before = "target check", None
    try:
        record["serving_before"] = before = target.current_version(model_name)
        stage = recovery.ROLLOUT
        step(stage)
        log.info("deploying %s v%s to %s (serving: %s)", model_name, version, target.name, before)
        target.rollout(model_name, version)
        stage = recovery.SMOKE
        step(stage)
        record["smoke"] = smoke.smoke_test(
            model_name,
            version,
            lake=lake,
            endpoint=target.endpoint,
            rows=smoke_rows or settings.deploy_smoke_rows,
            tracking_uri=tracking_uri,
        )
    except Exception as e:  # any failure rolls back, then is re-raised below
        if isinstance(e, smoke.SmokeTestError):
            record["smoke"] = e.result
        # Back to what the target served before, unless that was nothing or this very version.
        service_previous = before if before not in (None, version) else alias_previous
        log.warning(
            "deploy of %s v%s failed at the %s: %s; rolling back", model_name, version, stage, e
        )
        record.update(
            stage=stage,
            error=f"{type(e).__name__}: {e}" if not isinstance(e, DeployError) else str(e),
        )
        try:
            step(recovery.ROLLBACK)
        except DeployError as lake_error:  # the lake may be what failed: roll back all the same
            log.warning("could not record the rollback's intent: %s", lake_error)
        record["rollback"] = rb = recovery.rollback(
            target,
            c,
            model_name,
            version,
            service_previous=service_previous,
            alias_previous=alias_previous,
            restore=restore,
            on_step=on_step,
        )
        record["status"] = "rolled_back" if rb["ok"] else "rollback_failed"
        uri = records.save(lake, c, record, started_at=started, seconds=time.monotonic() - t0)
        if uri is not None:  # else the intent stays: reconcile writes the record later
            records.clear_intent(lake, model_name)
        raise DeployError(records.failure_message(record, uri), record) from e
    step(recovery.RECORD)
    record["status"] = "deployed"
    records.save(lake, c, record, started_at=started, seconds=time.monotonic() - t0, strict=True)
    records.clear_intent(lake, model_name)
    log.info("deployed %s version %s to %s: %s", model_name, version, target.name, record["smoke"])
    return record
