"""The ``dslc`` command line: run the embedded stack, replay data, drive Airflow's REST API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

app = typer.Typer(
    help="The data-science lifecycle on Airflow: local stack, data replay, backfills.",
    no_args_is_help=True,
    add_completion=False,
)


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date: use YYYY-MM-DD") from None


@app.command()
def up(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for health.")] = 180.0,
    distributed: Annotated[
        bool,
        typer.Option(
            "--distributed",
            help="Run this state dir on PostgreSQL, CeleryExecutor (Redis) and S3 "
            "(DSLC_POSTGRES_URL, DSLC_REDIS_URL, DSLC_S3_ENDPOINT_URL).",
        ),
    ] = False,
) -> None:
    """Start the stack (Airflow, MLflow, serving) in the background; idempotent."""
    from dslc.dev import stack

    stack.up(timeout=timeout, distributed=distributed)


@app.command()
def down(
    purge: Annotated[
        bool,
        typer.Option(
            "--purge",
            help="Distributed stack: also drop its databases, Celery queue and bucket.",
        ),
    ] = False,
) -> None:
    """Stop what `dslc up` started (and only that)."""
    from dslc.dev import stack

    stack.down(purge=purge)


@app.command()
def status() -> None:
    """Show each service of the embedded stack: pid, address, health."""
    from dslc.dev import stack

    raise typer.Exit(stack.status())


@app.command()
def replay(
    start: Annotated[str, typer.Option(help="First day to land, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last day to land (inclusive), YYYY-MM-DD.")],
    dataset: Annotated[
        str | None,
        typer.Option(help="Dataset to replay (default: the use case's primary, with the rest)."),
    ] = None,
) -> None:
    """Play the upstream system: land each day's CSV files under landing/ in the lake."""
    from dslc.dev.replay import replay_cli
    from dslc.settings import get_usecase

    first, last = _date(start), _date(end)
    if last < first:
        raise typer.BadParameter(f"--end {end} is before --start {start}")
    if dataset is not None:
        try:
            get_usecase().dataset(dataset)
        except KeyError as e:
            raise typer.BadParameter(str(e.args[0])) from None
    from dslc.dev.stack import use_stack_env

    use_stack_env()  # a distributed stack's lake is on S3
    replay_cli(first, last, dataset=dataset)


@app.command()
def backfill(
    dag_id: Annotated[str, typer.Argument(help="The DAG to backfill, e.g. ingest.")],
    start: Annotated[str, typer.Option(help="First logical date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last logical date (inclusive), YYYY-MM-DD.")],
    reprocess: Annotated[
        str, typer.Option(help="Airflow reprocess_behavior: none, failed or completed.")
    ] = "failed",
    wait: Annotated[bool, typer.Option(help="Follow progress until the backfill ends.")] = True,
    max_active_runs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Runs at once (Airflow's default is 10, whatever the DAG says); "
            "1 runs the days in order, as drift_monitor needs.",
        ),
    ] = None,
) -> None:
    """Start a backfill through Airflow's REST API and follow its progress."""
    from dslc.dev.backfill import backfill_cli

    first, last = _date(start), _date(end)
    if last < first:
        raise typer.BadParameter(f"--end {end} is before --start {start}")
    if reprocess not in {"none", "failed", "completed"}:
        raise typer.BadParameter("--reprocess must be one of: none, failed, completed")
    ok = backfill_cli(
        dag_id, first, last, reprocess=reprocess, wait=wait, max_active_runs=max_active_runs
    )
    raise typer.Exit(0 if ok else 1)


@app.command()
def serve(
    model: Annotated[
        str | None,
        typer.Option(
            help="models:/<name>/<version>, models:/<name>@<alias>, or none to start without "
            "a model (default: models:/<DSLC_MODEL_NAME>@champion)."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Default DSLC_SERVING_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default DSLC_SERVING_PORT.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the model-serving API in the foreground (POST /predict, /ready, /metrics, /docs)."""
    from dslc.dev.stack import use_stack_env
    from dslc.serving.__main__ import main as serving_main

    use_stack_env()  # the model is loaded from the stack's MLflow

    argv = ["--log-level", log_level]
    for flag, value in (("--model", model), ("--host", host), ("--port", port)):
        if value is not None:
            argv += [flag, str(value)]
    raise typer.Exit(serving_main(argv))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
