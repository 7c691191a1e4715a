"""Airflow notifiers that e-mail the lifecycle's events through the SMTP provider.

Each notifier gathers the facts of its event from the task's callback context (the tasks'
XComs, the exception), has :mod:`dslc.notify` word the message, and sends it with the SMTP
provider's hook through the connection ``DSLC_SMTP_CONN_ID`` (default ``smtp_default``: host,
port, login, password, the sender as its ``from_email`` extra) to ``DSLC_NOTIFY_EMAILS``.

* :class:`FailureNotifier`, every task's ``on_failure_callback`` in train, drift_monitor and
  deploy: a task failed for good; a rollback message when it rolled a deploy back;
* :class:`PromotionNotifier`, on train's ``promote`` succeeding: promoted, or rejected;
* :class:`RetrainNotifier`, on drift_monitor's ``trigger_retraining`` succeeding: the retrain
  it triggered;
* :class:`ReconcileNotifier`, on drift_monitor's ``reconcile_deployment`` succeeding: the
  rollback of a deploy killed half-way, when it did one.

A notification never fails the run it reports on: with no address set nothing is looked up or
sent, and any error while building or sending is logged as a warning and dropped. The SMTP
password stays in the connection; Airflow masks a connection's password in logs when it is
looked up (and the ``dslc_masking`` plugin masks it at task start when the connection comes
from the environment).

Creating a notifier is cheap (DAG files do it at parse): nothing is imported or looked up
until a callback fires.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk.bases.notifier import BaseNotifier

if TYPE_CHECKING:
    from dslc.notify import Message, Run

log = logging.getLogger("airflow.task")


class LifecycleNotifier(BaseNotifier):
    """Sends what :meth:`compose` says (nothing when it returns None or no address is set)."""

    # The message is built in Python from the facts, never rendered as a Jinja template: an
    # error text with "{{" in it must arrive as it was.
    template_fields: Sequence[str] = ()

    def compose(self, context: Mapping[str, Any]) -> Message | None:
        """The message for this callback's context, or None when there is nothing to tell."""
        raise NotImplementedError

    def notify(self, context: Any) -> None:
        from dslc.settings import get_settings

        name = type(self).__name__
        try:
            settings = get_settings()
            to = settings.notify_recipients
            if not to:
                return  # notifications are off (DSLC_NOTIFY_EMAILS is empty)
            message = self.compose(context)
            if message is None:
                return
            send(message, to, settings.smtp_conn_id)
        except Exception as e:  # never fail (or retry) the run because of a notification
            log.warning(
                "%s: notification not sent (the run is not affected): %s", name, describe(e)
            )
            return
        log.info("%s: e-mailed %s to %s", name, message.subject, ", ".join(to))


def send(message: Message, to: list[str], conn_id: str) -> None:
    """E-mail ``message`` to ``to`` through the SMTP connection ``conn_id``."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    from dslc.errors import ConfigError

    with SmtpHook(smtp_conn_id=conn_id) as hook:
        if not hook.from_email:
            raise ConfigError(
                f"the SMTP connection {conn_id!r} names no sender: set its from_email extra "
                "(e.g. dslc@example.com)"
            )
        hook.send_email_smtp(
            to=to,
            subject=message.subject,
            html_content=message.html(),
            custom_headers={"X-Dslc-Event": message.event},
        )


def describe(error: BaseException | None) -> str:
    """An exception as one text, secrets masked (Airflow's masker knows the run's secrets)."""
    from airflow.sdk._shared.secrets_masker import redact
    from airflow.sdk.exceptions import AirflowFailException

    if error is None:
        text = (
            "no exception reached the callback (the task was killed or its worker lost): see "
            "the task log"
        )
    elif isinstance(error, AirflowFailException):
        text = str(error)  # a dslc error's message, already saying what to do
    else:
        text = f"{type(error).__name__}: {error}"
    return str(redact(text))


def base_url() -> str:
    """Airflow's UI: ``[api] base_url`` when set, else the stack's (``DSLC_AIRFLOW_*``)."""
    from airflow.sdk.configuration import conf

    from dslc.settings import get_settings

    return str(conf.get("api", "base_url", fallback=None) or get_settings().airflow_url)


def run_of(context: Mapping[str, Any]) -> Run:
    """The run a callback is about, with its link in the UI."""
    from dslc.notify import Run, run_url

    ti = context["ti"]
    logical = getattr(context.get("dag_run"), "logical_date", None)
    day = logical.date().isoformat() if logical is not None else None
    return Run(ti.dag_id, ti.run_id, day, run_url(base_url(), ti.dag_id, ti.run_id))


def rollback_record(error: BaseException | None) -> dict[str, Any] | None:
    """The deployment record of a rolled-back deploy behind ``error`` (None: not a rollback)."""
    from dslc.deploy.target import DeployError

    seen = 0
    while error is not None and seen < 5:  # the task wraps it (AirflowFailException from ...)
        if isinstance(error, DeployError) and error.record is not None:
            return error.record
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


class FailureNotifier(LifecycleNotifier):
    """A task failed for good: a rollback message if it rolled a deploy back, else the error."""

    def compose(self, context: Mapping[str, Any]) -> Message:
        from dslc import notify

        ti, error = context["ti"], context.get("exception")
        run = run_of(context)
        record = rollback_record(error)
        if record is not None:
            return notify.rollback(run, task_id=ti.task_id, record=record)
        try_number = getattr(ti, "try_number", None)
        # The task's log in the UI, on the same base URL as the run's link (ti.log_url would
        # fall back to localhost:8080 where [api] base_url is unset).
        log_url = notify.run_url(base_url(), ti.dag_id, ti.run_id, ti.task_id)
        return notify.failure(
            run,
            task_id=ti.task_id,
            error=describe(error),
            try_number=try_number,
            log_url=f"{log_url}?try_number={try_number}" if try_number else log_url,
        )


class PromotionNotifier(LifecycleNotifier):
    """train's promote decided: promoted, or rejected (reads assemble's and evaluate's XComs)."""

    def __init__(self, evaluate: str = "evaluate", assemble: str = "assemble") -> None:
        super().__init__()
        self.evaluate, self.assemble = evaluate, assemble

    def compose(self, context: Mapping[str, Any]) -> Message:
        from dslc import notify
        from dslc.settings import get_settings

        ti = context["ti"]
        promoted = ti.xcom_pull(task_ids=ti.task_id)
        evaluated = ti.xcom_pull(task_ids=self.evaluate)
        assembled = ti.xcom_pull(task_ids=self.assemble)
        model = assembled["config"]["model_name"]
        w = assembled["window"]
        return notify.promotion(
            run_of(context),
            model=model,
            promoted=promoted,
            evaluated=evaluated,
            window=f"{w['first']}..{w['last']} ({w['days']} days)",
            trigger_reason=assembled["lineage"].get("dslc.trigger_reason"),
            model_url=f"{get_settings().mlflow_url}/#/models/{quote(model)}/versions/"
            f"{promoted['version']}",
        )


class RetrainNotifier(LifecycleNotifier):
    """drift_monitor triggered train (reads the decide task's conf and run id)."""

    def __init__(self, decide: str = "decide") -> None:
        super().__init__()
        self.decide = decide

    def compose(self, context: Mapping[str, Any]) -> Message:
        from dslc import notify
        from dslc.settings import get_settings

        ti = context["ti"]
        conf = ti.xcom_pull(task_ids=self.decide, key="conf")
        train_run_id = ti.xcom_pull(task_ids=self.decide, key="run_id")
        dag_id = getattr(context.get("task"), "trigger_dag_id", "train")
        return notify.retrain_triggered(
            run_of(context),
            model=get_settings().model_name,
            conf=conf,
            train_run_id=train_run_id,
            train_run_url=notify.run_url(base_url(), dag_id, train_run_id),
        )


class ReconcileNotifier(LifecycleNotifier):
    """drift_monitor's reconcile rolled back a deploy killed half-way (else nothing to tell)."""

    def compose(self, context: Mapping[str, Any]) -> Message | None:
        from dslc import notify

        ti = context["ti"]
        record = (ti.xcom_pull(task_ids=ti.task_id) or {}).get("rolled_back")
        if not record:
            return None
        return notify.rollback(
            run_of(context),
            task_id=ti.task_id,
            record=record,
            how=" by drift_monitor's reconcile (the deploy process had died half-way)",
        )
