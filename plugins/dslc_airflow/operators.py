"""Operators of our own: small extensions of Airflow's."""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator


class TriggerRunWithNote(TriggerDagRunOperator):
    """``TriggerDagRunOperator`` with its ``note`` templated too (Airflow's templates only the
    conf, the ids and the flags), so the note of the run it triggers (Markdown, shown on that
    run in the UI) can come from an upstream task's XCom."""

    template_fields = (*TriggerDagRunOperator.template_fields, "note")
