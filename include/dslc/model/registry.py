"""Every MLflow call of the project: runs, model logging, versions, aliases, promotion.

Rules kept here so nothing else needs to know them:

* one ``MlflowClient`` per call site with the tracking URI from settings; no global state;
* idempotent by DAG run id: a DAG run has at most one MLflow run (found by the
  ``dslc.dag_run_id`` tag) and that run at most one model version (found by ``run_id``), so
  a retried task reuses what the first attempt made;
* aliases (``champion``, ``previous_champion``), never stages, and only moved here; promotion
  is a compare-and-swap against the champion the challenger was evaluated against, a manual
  deploy moves them with :func:`move_champion` and a failed deploy puts them back with
  :func:`restore_champion`;
* models are saved with skops and loaded with *our* trusted-types list (the use case's
  :attr:`dslc.usecase.ModelSpec.trusted_types`), not the list stored in the artifact, so a
  tampered artifact cannot widen what gets deserialised.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import re
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dslc.errors import ServiceUnavailableError, UserError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from sklearn.pipeline import Pipeline

    from dslc.lake import Lake
    from dslc.model.results import Logged, Promoted, Registered

log = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS = "previous_champion"
TAG_DAG_RUN = "dslc.dag_run_id"
TAG_MODEL_LOGGED = "dslc.model_logged"
TAG_PROFILE = "dslc.reference_profile"
TAG_DECISION = "dslc.promotion"
TAG_DECISION_REASON = "dslc.promotion_reason"
MODEL_PATH = "model"
PROFILE_PATH = "reference/profile.json"
_MODEL_URI = re.compile(r"models:/([A-Za-z0-9_.\-]+)(?:/(\d+)|@([A-Za-z0-9_\-]+))")
# Fail fast when the server is down (Airflow's task retries do the waiting), instead of
# MLflow's default of 7 retries with exponential backoff (minutes per call).
_MLFLOW_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}
# Requests to MLflow in flight at once while logging a model (its files upload side by side).
UPLOAD_THREADS = 4
# The runtime the model needs; pinned to what trained it (inferring this costs 10-20 s).
_MODEL_REQUIREMENTS = ("scikit-learn", "skops", "pandas", "numpy", "scipy")


class RegistryError(UserError):
    """Something in MLflow is not as it must be; the message says what and what to do."""


class RegistryUnavailableError(RegistryError, ServiceUnavailableError):
    """The MLflow server cannot be reached."""


class PromotionConflictError(RegistryError):
    """Another run moved the champion alias after this run was evaluated."""


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI: ``uri`` or settings (``DSLC_MLFLOW_TRACKING_URI``, else the stack's)."""
    from dslc.settings import get_settings

    return uri or get_settings().mlflow_url


def _check_reachable(uri: str) -> None:
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as resp:  # noqa: S310
            resp.read()
    except (urllib.error.URLError, OSError) as e:
        raise RegistryUnavailableError(
            f"the MLflow server at {uri} is not reachable ({e}); start it (`dslc up`) or set "
            "DSLC_MLFLOW_TRACKING_URI, then clear the task"
        ) from e


def client(uri: str | None = None) -> MlflowClient:
    """An ``MlflowClient`` for the tracking server, checked to be reachable."""
    for key, value in _MLFLOW_ENV.items():
        os.environ.setdefault(key, value)
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(uri)
    _check_reachable(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextlib.contextmanager
def reporting(uri: str, what: str) -> Iterator[None]:
    """Turn a connection failure in the middle of an MLflow call into a clear error."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import ConnectionError as RequestsConnectionError

    try:
        yield
    except RequestsConnectionError as e:
        raise RegistryUnavailableError(
            f"lost the MLflow server at {uri} while trying to {what}: {e}. Nothing was "
            "promoted; check the server and clear the task"
        ) from e
    except MlflowException as e:
        if "Max retries exceeded" in str(e) or "Connection refused" in str(e):
            raise RegistryUnavailableError(
                f"lost the MLflow server at {uri} while trying to {what}. Nothing was "
                "promoted; check the server and clear the task"
            ) from e
        raise


def git_sha() -> str:
    """The commit of the code (``DSLC_GIT_SHA`` if set, else ``git rev-parse``), or unknown."""
    from dslc.settings import get_settings

    if sha := os.environ.get("DSLC_GIT_SHA"):
        return sha
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=get_settings().project_root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=get_settings().project_root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def experiment_id(c: MlflowClient, name: str) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    from mlflow.exceptions import MlflowException

    try:
        return str(c.create_experiment(name))
    except MlflowException:  # created by a concurrent run meanwhile
        exp = c.get_experiment_by_name(name)
        assert exp is not None
        return str(exp.experiment_id)


def filter_value(value: str) -> str:
    """Quote a value for an MLflow search filter."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def find_run(c: MlflowClient, experiment_id: str, dag_run_id: str) -> Any | None:
    """The MLflow run made for a DAG run, if any (oldest first if somehow several)."""
    runs = c.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_DAG_RUN}` = {filter_value(dag_run_id)}",
        order_by=["attributes.start_time ASC"],
        max_results=5,
    )
    return runs[0] if runs else None


def _batch(
    c: MlflowClient,
    run_id: str,
    metrics: dict[str, float] | None = None,
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    import math
    import time

    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    m = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if not math.isnan(v)]
    p = [Param(k, str(v)) for k, v in (params or {}).items()]
    t = [RunTag(k, str(v)[:5000]) for k, v in (tags or {}).items()]
    # log_batch takes at most 1000 metrics / 100 params / 100 tags per call.
    for i in range(0, max(len(m), len(p), len(t), 1), 100):
        c.log_batch(run_id, metrics=m[i : i + 100], params=p[i : i + 100], tags=t[i : i + 100])


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in _MODEL_REQUIREMENTS]


def save_model(pipeline: Pipeline, path: Path, input_example: pd.DataFrame) -> None:
    """Save an MLflow sklearn model (skops, explicit requirements, signature, example).

    Two costs of ``mlflow.sklearn.save_model`` are not paid (B5: MLflow's share of the train
    step): the signature's output schema is inferred from a float array of the example's
    length rather than from a prediction (``predict_proba[:, 1]`` is always a float64 vector),
    and MLflow's re-load of the skops file it just wrote is skipped
    (:func:`_skops_reload_skipped`): that re-load only checks the types against the list the
    artifact carries, while ``evaluate`` loads the logged model with *our* list right after.
    """
    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature

    from dslc.model.spec import trusted_types

    signature = infer_signature(input_example, np.zeros(len(input_example), dtype=np.float64))
    with _skops_reload_skipped():
        mlflow.sklearn.save_model(
            pipeline,
            str(path),
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=trusted_types(),
            signature=signature,
            input_example=input_example,
            pip_requirements=_requirements(),
        )


_SKOPS_PATCH = threading.Lock()


@contextlib.contextmanager
def _skops_reload_skipped() -> Iterator[None]:
    """While saving, ``skops.io.load`` (which ``mlflow.sklearn`` calls right after
    ``skops.io.dump``, only to check the trusted types) does nothing.

    Scoped to one ``save_model`` call under a lock; the task process that saves a model loads
    none meanwhile. Every load of ours goes through :func:`load_local_model`, which checks the
    types against the use case's list, so no check is lost: a model that needs a type we do not
    trust still fails, in ``evaluate``, before it can be registered.
    """
    import skops.io

    def _no_reload(*_args: Any, **_kwargs: Any) -> None:
        return None

    with _SKOPS_PATCH:
        real = skops.io.load
        skops.io.load = _no_reload
        try:
            yield
        finally:
            skops.io.load = real


def open_training_run(
    *,
    dag_run_id: str,
    params: dict[str, Any],
    split: dict[str, Any],
    lineage: dict[str, str],
    tracking_uri: str | None = None,
) -> Logged:
    """Find or create the DAG run's MLflow run and log what is known before the fit: params,
    lineage and window tags, ``split.json``. ``reused``: that run already holds its model
    (a retry after the model was logged), so there is nothing left to log."""
    from dslc.settings import get_settings

    uri = resolve_tracking_uri(tracking_uri)
    c = client(uri)
    with reporting(uri, "start the training run"):
        exp = experiment_id(c, get_settings().mlflow_experiment)
        run = find_run(c, exp, dag_run_id)
        if run is not None and run.data.tags.get(TAG_MODEL_LOGGED) == "true":
            log.info(
                "MLflow run %s already holds this DAG run's model: reusing it", run.info.run_id
            )
            return {"run_id": run.info.run_id, "reused": True, "tracking_uri": uri}
        if run is None:
            run_id = c.create_run(
                exp, tags={TAG_DAG_RUN: dag_run_id}, run_name=f"train {dag_run_id}"[:250]
            ).info.run_id
        else:
            run_id = run.info.run_id
            log.info("resuming MLflow run %s left by an earlier attempt", run_id)
        window = split["window"]
        tags = {
            **lineage,
            "dslc.window": f"{window['first']}..{window['last']}",
            "dslc.missing_days": ",".join(split["missing_days"]) or "none",
            "dslc.partitions": _partitions_tag(split),
        }
        # One after the other: ``train`` runs all this beside the fit, off its critical path.
        _batch(c, run_id, params=params, tags=tags)
        c.log_dict(run_id, split, "split.json")
    return {"run_id": run_id, "reused": False, "tracking_uri": uri}


def log_model(
    opened: Logged, *, pipeline: Pipeline, metrics: dict[str, float], input_example: pd.DataFrame
) -> Logged:
    """Save the fitted model into the run :func:`open_training_run` opened (its files upload
    side by side), then log the metrics with the ``dslc.model_logged`` tag, which marks the
    model complete, and finish the run. Nothing to do for a reused run."""
    if opened["reused"]:
        return opened
    uri, run_id = opened["tracking_uri"], opened["run_id"]
    c = client(uri)
    with reporting(uri, "log the trained model"):
        with (
            concurrent.futures.ThreadPoolExecutor(UPLOAD_THREADS) as pool,
            tempfile.TemporaryDirectory(prefix="dslc-model-") as tmp,
        ):
            path = Path(tmp) / MODEL_PATH
            save_model(pipeline, path, input_example)
            sent = [
                pool.submit(c.log_artifact, run_id, str(file), where)
                for file, where in _artifact_files(path, MODEL_PATH)
            ]
            for future in sent:  # every file must land (the first error raises)
                future.result()
        # Only now, with every file uploaded: the tag tells a retry the model is complete.
        _batch(c, run_id, metrics=metrics, tags={TAG_MODEL_LOGGED: "true"})
        c.set_terminated(run_id, "FINISHED")
    return opened


def fail_training_run(opened: Logged) -> None:
    """Mark a run whose fit failed FAILED (best effort: the fit's error is the one to see)."""
    if opened["reused"]:
        return
    try:
        client(opened["tracking_uri"]).set_terminated(opened["run_id"], "FAILED")
    except Exception as e:  # never hide the fit's error behind this one
        log.warning("could not mark MLflow run %s FAILED: %s", opened["run_id"], e)


def _artifact_files(root: Path, artifact_path: str) -> list[tuple[Path, str]]:
    """Each file under ``root`` with the artifact directory it goes to (as ``log_artifacts``)."""
    out = []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        parent = file.parent.relative_to(root).as_posix()
        out.append((file, artifact_path if parent == "." else f"{artifact_path}/{parent}"))
    return out


def _partitions_tag(split: dict[str, Any]) -> str:
    """``ds=hash`` for each partition (hash shortened; the full list is in split.json)."""
    return ",".join(
        f"{p['ds']}:{p['content_hash'].split(':')[-1][:12]}" for p in split["partitions"]
    )


def load_local_model(path: Path) -> Any:
    """Load an MLflow sklearn model directory with our skops trusted types (never pickle)."""
    import skops.io
    import yaml

    from dslc.model.spec import trusted_types

    try:
        flavor = yaml.safe_load((path / "MLmodel").read_text())["flavors"]["sklearn"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as e:
        raise RegistryError(f"{path} is not an MLflow scikit-learn model: {e}") from e
    if flavor.get("serialization_format") != "skops":
        raise RegistryError(
            f"the model at {path} is saved as {flavor.get('serialization_format')!r}, not "
            "skops: refusing to unpickle it"
        )
    return skops.io.load(path / flavor["pickled_model"], trusted=trusted_types())


def _download_and_load(artifact_uri: str, uri: str) -> Any:
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="dslc-load-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=artifact_uri, dst_path=tmp, tracking_uri=uri
        )
        return load_local_model(Path(local))


def load_run_model(run_id: str, tracking_uri: str | None = None) -> Any:
    """The model logged by :func:`log_model` in run ``run_id``."""
    uri = resolve_tracking_uri(tracking_uri)
    c = client(uri)
    with reporting(uri, f"load the model of run {run_id}"):
        return _download_and_load(f"{c.get_run(run_id).info.artifact_uri}/{MODEL_PATH}", uri)


def get_version(c: MlflowClient, name: str, version: str) -> ModelVersion:
    """A model version, or a :class:`RegistryError` naming what does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version(name, str(version))
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            raise RegistryError(f"{name!r} has no version {version!r}: {e.message}") from e
        raise


def parse_model_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """``models:/<name>/<version>`` or ``models:/<name>@<alias>`` -> (name, version, alias).

    Exactly one of version and alias is set; nothing is looked up.
    """
    m = _MODEL_URI.fullmatch(model_uri)
    if m is None:
        raise RegistryError(
            f"{model_uri!r} is not a model URI: use models:/<name>/<version> or "
            "models:/<name>@<alias>"
        )
    name, version, alias = m.groups()
    return name, version, alias


def resolve_model_uri(model_uri: str, tracking_uri: str | None = None) -> tuple[str, str]:
    """``models:/<name>/<version>`` or ``models:/<name>@<alias>`` -> (name, version)."""
    name, version, alias = parse_model_uri(model_uri)
    if version is not None:
        return name, version
    assert alias is not None
    uri = resolve_tracking_uri(tracking_uri)
    c = client(uri)
    with reporting(uri, f"resolve {model_uri}"):
        mv = get_alias(c, name, alias)
    if mv is None:
        raise RegistryError(f"{name!r} has no {alias!r} alias: nothing to load for {model_uri}")
    return name, str(mv.version)


def load_version(name: str, version: str, tracking_uri: str | None = None) -> Any:
    """The sklearn pipeline of model version ``name``/``version`` (skops, trusted types)."""
    uri = resolve_tracking_uri(tracking_uri)
    c = client(uri)
    with reporting(uri, f"load {name} version {version}"):
        mv = get_version(c, name, version)
        return _download_and_load(str(mv.source), uri)


def get_alias(c: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version an alias points at, or None if the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException as e:
        # A missing model is RESOURCE_DOES_NOT_EXIST; a missing alias on an existing model
        # comes back as INVALID_PARAMETER_VALUE "... alias champion not found".
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or (
            e.error_code == "INVALID_PARAMETER_VALUE" and "not found" in e.message
        ):
            return None
        raise


def champion_state(c: MlflowClient, name: str) -> tuple[str | None, str | None]:
    """The versions ``champion`` and ``previous_champion`` point at (None: no such alias)."""
    champ = get_alias(c, name, CHAMPION)
    prev = get_alias(c, name, PREVIOUS)
    return (
        str(champ.version) if champ is not None else None,
        str(prev.version) if prev is not None else None,
    )


# Promote and deploy tasks run in this 1-slot Airflow pool (`dslc up` creates it), so no two
# of them move the champion alias at once; _set_champion narrows what is left (writers
# outside Airflow: the MLflow UI, scripts).
PROMOTE_POOL = "dslc_promote"


def _champion_version(c: MlflowClient, name: str) -> str | None:
    mv = get_alias(c, name, CHAMPION)
    return str(mv.version) if mv is not None else None


def _set_champion(c: MlflowClient, name: str, version: str, expected: str | None) -> None:
    """Move ``champion`` from ``expected`` to ``version`` (``previous_champion`` <- ``expected``).

    MLflow has no conditional alias update, so this is check, set, verify: the caller checked
    just before; afterwards champion is read back, and a writer that moved it after this one is
    reported. What remains is one round trip: two writers that both check before either sets
    and both verify before the other sets each believe they won (the last set stands).
    ``champion`` is set before ``previous_champion``, so a process killed in between leaves
    ``previous_champion`` as it was, which a retry or a rollback reads correctly.
    """
    c.set_registered_model_alias(name, CHAMPION, version)
    if expected is not None:
        c.set_registered_model_alias(name, PREVIOUS, expected)
    after = _champion_version(c, name)
    if after != version:
        raise PromotionConflictError(
            f"{CHAMPION} of {name} was moved to version {after} by another writer right after "
            f"this one moved it to {version}: version {after} won. Check who moved it (MLflow: "
            "the model's aliases) before deploying again"
        )


def move_champion(
    c: MlflowClient, name: str, version: str, *, expected: str | bool | None = False
) -> dict[str, str | None]:
    """Point ``champion`` at ``version`` and ``previous_champion`` at the old champion.

    Returns both aliases as they were, for :func:`restore_champion`; empty when ``champion``
    already pointed at ``version`` (nothing moved). Unlike :func:`promote`, no gate: this is the
    manual deploy or rollback an operator asked for. ``expected``: the champion the caller saw
    (None: no champion); if the alias moved since, :class:`PromotionConflictError` and nothing
    moves.
    """
    champion, previous = champion_state(c, name)
    if champion == version:
        return {}
    if expected is not False and champion != expected:
        raise PromotionConflictError(
            f"cannot move {CHAMPION} of {name} to version {version}: it pointed at version "
            f"{expected or '(none)'} a moment ago and now at {champion} (moved by another run "
            "meanwhile). Nothing was changed; deploy again if version "
            f"{version} should still replace version {champion}"
        )
    _set_champion(c, name, version, champion)
    log.info("moved %s of %s to version %s (was %s)", CHAMPION, name, version, champion)
    return {CHAMPION: champion, PREVIOUS: previous}


def restore_champion(
    c: MlflowClient,
    name: str,
    failed: str,
    previous: str | None,
    restore: dict[str, str | None] | None = None,
) -> str:
    """Point ``champion`` back at ``previous`` if it still points at ``failed``; say what moved.

    ``restore`` is what :func:`move_champion` returned when the failed deploy moved the aliases
    itself; then ``previous_champion`` goes back too.
    """
    champion, prev_alias = champion_state(c, name)
    if champion != failed:
        return (
            f"{CHAMPION} left at version {champion}: it no longer points at the "
            f"failed version {failed} (moved meanwhile)"
        )
    if previous is None:
        c.delete_registered_model_alias(name, CHAMPION)
        note = f"{CHAMPION} removed (there is no previous version to go back to)"
    else:
        c.set_registered_model_alias(name, CHAMPION, previous)
        note = f"{CHAMPION} -> version {previous}"
    if restore and prev_alias == restore.get(CHAMPION) and prev_alias is not None:
        old_prev = restore.get(PREVIOUS)
        if old_prev is None:
            c.delete_registered_model_alias(name, PREVIOUS)
        else:
            c.set_registered_model_alias(name, PREVIOUS, old_prev)
        note += f", {PREVIOUS} -> {old_prev or '(none)'}"
    return note


def load_champion(
    name: str, *, force: bool, tracking_uri: str | None = None
) -> tuple[str | None, Any | None, str | None]:
    """(version, model, note) of the champion; (None, None, note) when there is none.

    An unloadable champion is an error unless ``force``: comparing against nothing would let
    any challenger through.
    """
    uri = resolve_tracking_uri(tracking_uri)
    c = client(uri)
    with reporting(uri, "read the champion"):
        mv = get_alias(c, name, CHAMPION)
        if mv is None:
            return None, None, f"no {CHAMPION} of {name!r} yet: first model"
        try:
            return str(mv.version), _download_and_load(str(mv.source), uri), None
        except RegistryUnavailableError:
            raise
        except Exception as e:
            problem = (
                f"the {CHAMPION} of {name!r} (version {mv.version}, {mv.source}) cannot be "
                f"loaded: {type(e).__name__}: {str(e)[:300]}"
            )
            if not force:
                raise RegistryError(
                    f"{problem}. The challenger cannot be compared against it: fix or re-point "
                    f"the {CHAMPION} alias, or trigger `train` with force_promote=true to "
                    "evaluate against no champion"
                ) from e
            log.warning("%s; force_promote is set: evaluating against no champion", problem)
            return str(mv.version), None, f"{problem}; evaluated without it (force_promote)"


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in name)


def log_evaluation(run_id: str, result: dict[str, Any], tracking_uri: str | None = None) -> None:
    """Log the evaluation as JSON + a side-by-side Markdown table and as metrics (one batch)."""
    uri = resolve_tracking_uri(tracking_uri)
    c = client(uri)
    metrics: dict[str, float] = {}
    for who, prefix in (("challenger", "holdout"), ("champion", "champion_holdout")):
        scored = result.get(who)
        if scored is None:
            continue
        metrics.update({f"{prefix}_{k}": v for k, v in scored["overall"].items()})
        for sl, m in scored["slices"].items():
            metrics.update({f"{prefix}.{_slug(sl)}.{k}": m[k] for k in ("roc_auc", "log_loss")})
    with reporting(uri, "log the evaluation"):
        _batch(
            c,
            run_id,
            metrics=metrics,
            tags={"dslc.champion_version": str(result.get("champion_version") or "none")},
        )
        c.log_dict(run_id, result, "evaluation/evaluation.json")
        c.log_text(run_id, comparison_markdown(result), "evaluation/comparison.md")


def comparison_markdown(result: dict[str, Any]) -> str:
    """Challenger vs champion, overall and per slice, as a Markdown table."""
    champ = result.get("champion")
    head = f"champion v{result.get('champion_version')}" if champ else "champion (none)"
    lines = [f"| slice | metric | challenger | {head} |", "|---|---|---|---|"]
    for sl in ["overall", *result["challenger"]["slices"]]:
        ch = result["challenger"]["overall" if sl == "overall" else "slices"]
        ch = ch if sl == "overall" else ch[sl]
        cp = None
        if champ:
            cp = champ["overall"] if sl == "overall" else champ["slices"].get(sl)
        for k in ("roc_auc", "pr_auc", "log_loss", "brier", "calibration_gap"):
            other = f"{cp[k]:.4f}" if cp else "-"
            lines.append(f"| {sl} | {k} | {ch[k]:.4f} | {other} |")
    if result.get("champion_note"):
        lines.append(f"\n{result['champion_note']}")
    return "\n".join(lines) + "\n"


def _ensure_registered_model(c: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    from dslc.model.spec import model_spec

    try:
        c.get_registered_model(name)
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            raise
        with contextlib.suppress(MlflowException):  # a concurrent run created it
            c.create_registered_model(name, description=model_spec().description)


def version_of_run(c: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """The version registered from MLflow run ``run_id``, if any."""
    from mlflow.exceptions import MlflowException

    try:
        found = c.search_model_versions(
            f"name = {filter_value(name)} and run_id = {filter_value(run_id)}"
        )
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return None
        raise
    return min(found, key=lambda v: int(v.version)) if found else None


def feature_importance(pipeline: Any, valid: pd.DataFrame, rows: int = 2_000) -> dict[str, float]:
    """Permutation importance (drop in ROC AUC) of each model feature on validation rows.

    The drift policy treats drift in the most important features as dataset drift.
    """
    from sklearn.inspection import permutation_importance

    from dslc.model.spec import features_of, label_of, model_features

    sample = valid.sample(n=min(rows, len(valid)), random_state=0) if len(valid) else valid
    y = label_of(sample)
    if len(sample) < 50 or len(set(y.tolist())) < 2:
        return {}
    result = permutation_importance(
        pipeline,
        features_of(sample),
        y,
        scoring="roc_auc",
        # One shuffle of 2,000 rows ranks the features well enough for "the top N" and keeps
        # registration quick (3 shuffles of 5,000 rows took ~12 s on a loaded machine).
        n_repeats=1,
        random_state=0,
    )
    return {
        col: round(float(m), 6)
        for col, m in zip(model_features(), result.importances_mean, strict=True)
    }


def register(
    lake: Lake,
    *,
    split_path: str,
    run_id: str,
    model_name: str,
    lineage: dict[str, str],
    tracking_uri: str | None = None,
) -> Registered:
    """Register the run's model as a new version (once per run) with lineage tags and the
    drift reference profile fitted on its training rows."""
    from dslc.model import profile as drift_profile
    from dslc.model.split import load_frame, read_split
    from dslc.settings import get_usecase

    uri = resolve_tracking_uri(tracking_uri)
    c = client(uri)
    with reporting(uri, f"register run {run_id} as a version of {model_name!r}"):
        existing = version_of_run(c, model_name, run_id)
        if existing is not None:
            log.info(
                "run %s is already version %s: not registering again", run_id, existing.version
            )
            return {"version": str(existing.version), "created": False}
        run = c.get_run(run_id)
        t_profile = time.perf_counter()
        split = read_split(lake, split_path)
        train_df = load_frame(lake, split, "train")
        importance = feature_importance(
            _download_and_load(f"{run.info.artifact_uri}/{MODEL_PATH}", uri),
            load_frame(lake, split, "valid"),
        )
        spec = get_usecase().model
        profile = drift_profile.fit_profile(
            train_df, spec.numeric, spec.categorical, importance=importance
        )
        del train_df
        profile_s = time.perf_counter() - t_profile
        # Uploaded before the version exists: a retry finds a version only with its profile.
        c.log_dict(run_id, profile, PROFILE_PATH)
        window = split["window"]
        tags = {
            **lineage,
            TAG_DAG_RUN: run.data.tags.get(TAG_DAG_RUN, ""),
            "dslc.window": f"{window['first']}..{window['last']}",
            "dslc.partitions": _partitions_tag(split),
            "dslc.split": lake.uri(split_path),
            TAG_PROFILE: f"{run.info.artifact_uri}/{PROFILE_PATH}",
        }
        _ensure_registered_model(c, model_name)
        mv = c.create_model_version(
            model_name,
            source=f"{run.info.artifact_uri}/{MODEL_PATH}",
            run_id=run_id,
            tags={k: str(v)[:5000] for k, v in tags.items()},
            description=f"trained on {window['first']}..{window['last']}",
        )
        c.set_tag(run_id, "dslc.model_version", str(mv.version))
    log.info("registered %s version %s from run %s", model_name, mv.version, run_id)
    return {"version": str(mv.version), "created": True, "profile_s": round(profile_s, 3)}


def profile_of(mv: ModelVersion, tracking_uri: str | None = None) -> dict[str, Any]:
    """The drift reference profile logged with model version ``mv`` (by its profile tag)."""
    import mlflow.artifacts

    where = (mv.tags or {}).get(TAG_PROFILE)
    if not where:
        raise RegistryError(
            f"{mv.name} version {mv.version} has no reference profile (tag {TAG_PROFILE}): it "
            "was not registered by the `train` DAG. Retrain, or point the alias at a version "
            "that has one"
        )
    uri = resolve_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="dslc-profile-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=where, dst_path=tmp, tracking_uri=uri
        )
        loaded: dict[str, Any] = json.loads(Path(local).read_text())
    return loaded


def reference_profile(
    name: str, alias: str = CHAMPION, tracking_uri: str | None = None
) -> dict[str, Any]:
    """The drift reference profile logged with the version an alias points at."""
    uri = resolve_tracking_uri(tracking_uri)
    c = client(uri)
    with reporting(uri, f"read the reference profile of {name}@{alias}"):
        mv = get_alias(c, name, alias)
        if mv is None:
            raise RegistryError(f"{name!r} has no {alias!r} alias: train a model first")
        return profile_of(mv, uri)


def promote(
    name: str,
    version: str,
    evaluation: Mapping[str, Any],
    *,
    tolerance: float,
    floor: float,
    force: bool,
    tracking_uri: str | None = None,
) -> Promoted:
    """Apply the gate; on pass move ``champion`` (CAS on the evaluated champion) and keep
    ``previous_champion``; on reject tag the version with why. Returns the decision."""
    from dslc.model.gate import decide

    decision = decide(evaluation, tolerance=tolerance, floor=floor, force=force)
    expected = evaluation.get("champion_version")
    uri = resolve_tracking_uri(tracking_uri)
    c = client(uri)
    with reporting(uri, f"promote {name} version {version}"):
        current = get_alias(c, name, CHAMPION)
        current_v = str(current.version) if current is not None else None
        out: Promoted = {
            "version": version,
            "promote": decision.promote,
            "reason": decision.reason,
            "previous_champion": expected,
        }
        if current_v == version:  # a retry after the alias already moved
            log.info("version %s is already the %s", version, CHAMPION)
            c.set_model_version_tag(name, version, TAG_DECISION, "promoted")
            return {**out, "promote": True}
        if not decision.promote:
            c.set_model_version_tag(name, version, TAG_DECISION, "rejected")
            c.set_model_version_tag(name, version, TAG_DECISION_REASON, decision.reason[:5000])
            log.info(
                "NOT promoted: %s version %s stays registered: %s", name, version, decision.reason
            )
            return out
        if current_v != expected:
            raise PromotionConflictError(
                f"cannot promote {name} version {version}: it was evaluated against champion "
                f"{expected or '(none)'}, but the {CHAMPION} alias now points at version "
                f"{current_v} (moved by another run meanwhile). Version {current_v} won; "
                "re-run `train` to evaluate against it"
            )
        _set_champion(c, name, version, current_v)
        c.set_model_version_tag(name, version, TAG_DECISION, "promoted")
        c.set_model_version_tag(name, version, TAG_DECISION_REASON, decision.reason[:5000])
    log.info(
        "promoted %s version %s to %s (previous: %s): %s",
        name,
        version,
        CHAMPION,
        current_v,
        decision.reason,
    )
    return out
