"""dslc: the data-science lifecycle as plain Python, importable without Airflow.

The map (one package per lifecycle stage; each imports only the root modules and the stages
before it, and knows its data only through :mod:`dslc.usecase`)::

    root        ``settings`` (DSLC_* settings, the selected use case), ``errors`` (the error
                kinds tasks care about), ``lake`` (the lake: day partitions, atomic publish),
                ``usecase`` (what a use case is), ``notify`` (the notifications' words),
                ``reports`` (the lake's reports the UI serves, the links to them and MLflow)
    data/       sources (the replayer), ingest (extract, validate, publish raw), validation
                (Great Expectations, derived from the dataset descriptions), features
    model/      spec (the use case's model applied), split (the time split), profile (the
                drift reference profile), gate (the promotion gate), registry (every MLflow
                call), evaluation (challenger vs champion), training
    serving/    the HTTP service: schema, predictor, batcher, prediction log, app
    monitoring/ statistics (drift effect sizes), policy (the retrain decision), monitor (the
                drift DAG's steps), report (HTML)
    deploy/     targets (local, Kubernetes), smoke test, rollback, records
    usecases/   one package per use case: flights (the default) and tabular building blocks
    dev/        laptop tooling: the embedded stack, Airflow REST client, backfill, replay,
                demo, CLI, preload

``tests/layout/test_import_rules.py`` enforces the import rules. Importing this package does
no I/O and imports nothing heavy.
"""

from __future__ import annotations

__version__ = "0.1.0"
