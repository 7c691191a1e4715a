"""The laptop tooling: the ``dslc`` command, the embedded stack and the demo.

* :mod:`~dslc.dev.cli`: the ``dslc`` command line (Typer);
* :mod:`~dslc.dev.stack`: the embedded stack (Airflow, MLflow, serving): ``up``, ``down``,
  ``status``;
* :mod:`~dslc.dev.airflow_client`: a typed client for Airflow 3's REST API;
* :mod:`~dslc.dev.backfill`: ``dslc backfill`` and the demo's trigger, with their progress;
* :mod:`~dslc.dev.demo`: ``make demo``, the whole lifecycle story on the stack;
* :mod:`~dslc.dev.preload`: starts the scheduler with the tasks' heavy libraries imported;
* :mod:`~dslc.dev.console`: the commands' console and :class:`~dslc.dev.console.CliError`.

Only this package may import Typer and Rich, and only :mod:`~dslc.dev.preload` may import
Airflow.
"""
