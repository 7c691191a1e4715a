"""What the lifecycle tells people, in words: one e-mail per event, built from the facts the
tasks already hand each other (plain dicts), so every message is tested without Airflow or a
mail server.

* :func:`retrain_triggered`: ``drift_monitor`` started a ``train`` run;
* :func:`promotion`: ``train``'s ``promote`` moved the champion alias (promoted), or kept it
  (rejected);
* :func:`rollback`: a deploy failed and was undone (or could not be);
* :func:`failure`: a task of ``train``, ``drift_monitor`` or ``deploy`` failed for good.

``dslc_airflow.notify`` gathers the facts in the tasks' callbacks and sends the message through
Airflow's SMTP provider to ``DSLC_NOTIFY_EMAILS``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from dslc.errors import ConfigError

PREFIX = "[dslc]"
# An error longer than this is cut in the message (the task log has all of it).
MAX_ERROR_CHARS = 2000
TOP_FEATURES = 5

_ADDRESS = re.compile(r"^[^@\s,;<>\"']+@[^@\s,;<>\"']+$")


def parse_addresses(value: str | None) -> list[str]:
    """The addresses of a comma- (or semicolon-) separated list, in order, each once."""
    out: list[str] = []
    for part in re.split(r"[,;]", value or ""):
        address = part.strip()
        if not address:
            continue
        if not _ADDRESS.match(address):
            raise ConfigError(
                f"DSLC_NOTIFY_EMAILS has {address!r}, which is not an e-mail address: set a "
                "comma-separated list such as 'ml-team@example.com,oncall@example.com', or "
                "leave it empty to send nothing"
            )
        if address not in out:
            out.append(address)
    return out


def run_url(base_url: str, dag_id: str, run_id: str, task_id: str | None = None) -> str:
    """The DAG run (or one of its tasks) in Airflow's UI."""
    url = f"{base_url.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    return f"{url}/tasks/{quote(task_id, safe='')}" if task_id else url


@dataclass(frozen=True)
class Run:
    """The Airflow DAG run a message is about."""

    dag_id: str
    run_id: str
    day: str | None = None
    """The run's logical date (YYYY-MM-DD); None for a run without one (a manual ``train``)."""
    url: str | None = None
    """The run in Airflow's UI."""

    @property
    def label(self) -> str:
        return f"{self.dag_id} / {self.run_id}"


@dataclass(frozen=True)
class Message:
    """One e-mail: the subject, the sentence that says what happened, the facts, the links."""

    event: str
    subject: str
    summary: str
    facts: tuple[tuple[str, str], ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    next_step: str = ""

    def text(self) -> str:
        """The message as plain text."""
        lines = [self.summary, ""]
        lines += [f"{label}: {value}" for label, value in self.facts]
        if self.links:
            lines += ["", *(f"{label}: {url}" for label, url in self.links)]
        if self.next_step:
            lines += ["", f"Next: {self.next_step}"]
        return "\n".join(lines)

    def html(self) -> str:
        """The message as the HTML body of an e-mail (every value escaped)."""
        e = html.escape
        cell = 'style="padding:2px 12px 2px 0;vertical-align:top;white-space:pre-wrap"'
        rows = "".join(
            f"<tr><th {cell} align=left>{e(label)}</th><td {cell}>{e(value)}</td></tr>"
            for label, value in self.facts
        )
        links = "".join(
            f'<li><a href="{e(url, quote=True)}">{e(label)}</a></li>'
            if url.startswith(("http://", "https://"))
            else f"<li>{e(label)}: {e(url)}</li>"
            for label, url in self.links
        )
        parts = [f"<p>{e(self.summary)}</p>", f"<table>{rows}</table>"]
        if links:
            parts.append(f"<ul>{links}</ul>")
        if self.next_step:
            parts.append(f"<p><b>Next:</b> {e(self.next_step)}</p>")
        parts.append(
            '<p style="color:#666;font-size:smaller">Sent by dslc to the addresses in '
            "DSLC_NOTIFY_EMAILS.</p>"
        )
        return f'<html><body style="font-family:sans-serif">{"".join(parts)}</body></html>'


def _links(*pairs: tuple[str, str | None]) -> tuple[tuple[str, str], ...]:
    return tuple((label, url) for label, url in pairs if url)


def _facts(*pairs: tuple[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((label, str(value)) for label, value in pairs if value not in (None, ""))


def _features(drifted: Sequence[str], top: int = TOP_FEATURES) -> str:
    more = f" and {len(drifted) - top} more" if len(drifted) > top else ""
    return ", ".join(drifted[:top]) + more


def retrain_triggered(
    run: Run,
    *,
    model: str,
    conf: Mapping[str, Any],
    train_run_id: str,
    train_run_url: str | None = None,
) -> Message:
    """``drift_monitor`` triggered ``train``: why (the policy's reason), what drifted most, which
    window the retrain covers; ``conf`` is the triggered run's conf."""
    version = conf.get("champion_version")
    drifted = list(conf.get("drifted_features") or [])
    return Message(
        event="retrain_triggered",
        subject=f"{PREFIX} retrain triggered: {model} v{version} drifted ({run.day or run.run_id})",
        summary=f"drift_monitor triggered a retrain of {model}: {conf.get('reason', '')}",
        facts=_facts(
            ("Model", f"{model} version {version} (the champion)"),
            ("Day", run.day),
            ("Drift window", conf.get("drift_window")),
            ("Reason", conf.get("reason")),
            ("Most drifted", _features(drifted) if drifted else "no single feature"),
            (
                "Retraining",
                f"train run {train_run_id}: the {conf.get('window_days')} days ending "
                f"{conf.get('window_end')}",
            ),
            ("Drift report", conf.get("report_uri")),
            ("DAG run", run.label),
        ),
        links=_links(
            ("The train run", train_run_url),
            ("The drift_monitor run", run.url),
            ("The drift report", conf.get("report_uri")),
        ),
        next_step="nothing yet: the new model replaces the champion only if it passes the "
        "promotion gate, and you will be told either way.",
    )


def _auc(headline: Mapping[str, Any] | None) -> str:
    if not headline:
        return "n/a"
    return ", ".join(
        f"{name} {headline[key]:.4f}"
        for key, name in (
            ("roc_auc", "ROC AUC"),
            ("pr_auc", "PR AUC"),
            ("log_loss", "log loss"),
            ("brier", "Brier"),
        )
        if headline.get(key) is not None
    )


def _comparison(evaluated: Mapping[str, Any]) -> tuple[str, str | None]:
    """(the subject's short AUC comparison, the difference to the champion or None)."""
    ch = float(evaluated["challenger"]["roc_auc"])
    champ = evaluated.get("champion")
    if not champ:
        return f"ROC AUC {ch:.4f}, no champion to compare", None
    theirs = float(champ["roc_auc"])
    return (
        f"ROC AUC {ch:.4f} vs {theirs:.4f}",
        f"{ch - theirs:+.4f} (challenger minus champion)",
    )


def promotion(
    run: Run,
    *,
    model: str,
    promoted: Mapping[str, Any],
    evaluated: Mapping[str, Any],
    window: str | None = None,
    trigger_reason: str | None = None,
    model_url: str | None = None,
) -> Message:
    """``promote`` decided: the new champion, or a rejected challenger that stays registered.

    ``promoted`` and ``evaluated`` are the ``promote`` and ``evaluate`` tasks' results
    (:class:`dslc.model.results.Promoted`, :class:`~dslc.model.results.Evaluated`).
    """
    version = promoted["version"]
    champ_v = evaluated.get("champion_version") or promoted.get("previous_champion")
    short, diff = _comparison(evaluated)
    facts = _facts(
        ("Model", f"{model} version {version}"),
        ("Gate", promoted.get("reason")),
        ("Challenger (holdout)", _auc(evaluated["challenger"])),
        (
            "Champion (same holdout)",
            f"version {champ_v}: {_auc(evaluated.get('champion'))}" if champ_v else "none yet",
        ),
        ("ROC AUC difference", diff),
        ("Champion note", evaluated.get("champion_note")),
        ("Collapsed slices", "; ".join(evaluated.get("collapsed_slices") or [])),
        ("Training window", window),
        ("Why this run", trigger_reason),
        ("DAG run", run.label),
    )
    links = _links(("The model version in MLflow", model_url), ("The train run", run.url))
    if promoted["promote"]:
        before = f" (previous_champion: version {champ_v})" if champ_v else ""
        return Message(
            event="promoted",
            subject=f"{PREFIX} promoted: {model} v{version} is the champion ({short})",
            summary=f"{model} version {version} passed the promotion gate and is now the "
            f"champion{before}.",
            facts=facts,
            links=links,
            next_step="this run's deploy task serves it (unless its deploy param is off); a "
            "failed deploy is rolled back and reported.",
        )
    keeps = f"version {champ_v} stays the champion" if champ_v else "there is still no champion"
    return Message(
        event="rejected",
        subject=f"{PREFIX} rejected: {model} v{version} stays registered, not promoted ({short})",
        summary=f"{model} version {version} did not pass the promotion gate "
        f"({promoted.get('reason')}); {keeps} and nothing is deployed.",
        facts=facts,
        links=links,
        next_step=f"version {version} stays registered (tag dslc.promotion=rejected). To serve "
        f"it anyway, trigger the `deploy` DAG with version={version}; to promote past the gate, "
        "trigger `train` with force_promote.",
    )


def _restored_to(record: Mapping[str, Any]) -> str | None:
    """The version the service went back to (what it served before, else the previous one)."""
    before = record.get("serving_before")
    version = str(record.get("version"))
    return str(before) if before not in (None, version) else record.get("previous")


def _smoke(smoke: Mapping[str, Any] | None) -> str | None:
    if not smoke:
        return None
    verdict = "passed" if smoke.get("passed") else "FAILED"
    return (
        f"{verdict}: {smoke.get('rows')} rows, {smoke.get('mismatches')} mismatches, max "
        f"difference {smoke.get('max_abs_diff')}, answered by version {smoke.get('version_seen')}"
    )


def rollback(run: Run, *, task_id: str, record: Mapping[str, Any], how: str = "") -> Message:
    """A deploy failed and was rolled back (or the rollback itself failed); ``record`` is its
    deployment record (:mod:`dslc.deploy.records`). ``how``: who found it, if not the deploy
    itself (drift_monitor's reconcile of a deploy killed half-way)."""
    rb = record.get("rollback") or {}
    model, version, target = record.get("model"), record.get("version"), record.get("target")
    back = _restored_to(record)
    stage = record.get("stage")
    if rb.get("ok"):
        event = "rolled_back"
        subject = (
            f"{PREFIX} deploy rolled back: {model} v{version} failed at the {stage} on "
            f"{target}; {'back on v' + str(back) if back else 'nothing served'}"
        )
        summary = (
            f"The deploy of {model} version {version} to {target} failed at the {stage} and was "
            f"rolled back{how}: the service and the champion alias are back where they were."
        )
        next_step = (
            f"fix the cause, then deploy version {version} again with the `deploy` DAG (or "
            "retrain)."
        )
    else:
        event = "rollback_failed"
        subject = f"{PREFIX} ROLLBACK INCOMPLETE: {model} v{version} on {target}: check by hand"
        summary = (
            f"The deploy of {model} version {version} to {target} failed at the {stage}, and "
            f"rolling it back{how} failed too: what is served and the champion alias may "
            "disagree."
        )
        next_step = (
            "check what the service serves (/ready) and the champion alias in MLflow, then "
            "trigger the `deploy` DAG with the version that should serve."
        )
    return Message(
        event=event,
        subject=subject,
        summary=summary,
        facts=_facts(
            ("Model", f"{model} version {version}"),
            ("Target", f"{target} ({record.get('endpoint')})"),
            ("Failed at", stage),
            ("Cause", _cut(str(record.get("error") or ""))),
            ("Smoke test", _smoke(record.get("smoke"))),
            ("Service", rb.get("service")),
            ("Alias", rb.get("alias")),
            ("Deployed by", record.get("actor")),
            ("Reason", record.get("reason")),
            ("Record", record.get("record_uri")),
            ("DAG run", run.label),
            ("Task", task_id),
        ),
        links=_links(("The run", run.url)),
        next_step=next_step,
    )


def _cut(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 40] + f" ... ({len(text)} characters)"


def failure(
    run: Run,
    *,
    task_id: str,
    error: str,
    try_number: int | None = None,
    log_url: str | None = None,
) -> Message:
    """A task failed for good (no retries left): which, where, the error."""
    attempt = f" on try {try_number}" if try_number else ""
    return Message(
        event="failed",
        subject=f"{PREFIX} failed: {run.dag_id} task {task_id} ({run.day or run.run_id})",
        summary=f"Task {task_id} of {run.dag_id} run {run.run_id} failed{attempt}, with no "
        "retries left; the tasks after it did not run.",
        facts=_facts(
            ("DAG", run.dag_id),
            ("Run", run.run_id),
            ("Day", run.day),
            ("Task", task_id),
            ("Try", try_number),
            ("Error", _cut(error)),
        ),
        links=_links(("The task log", log_url), ("The run", run.url)),
        next_step="the error says what was wrong; once it is fixed, clear the task in Airflow "
        "to run it and the tasks after it again.",
    )
