"""``dslc up``, ``down`` and ``status``: start what is not running and wait until it is healthy,
stop what ``up`` started (and only that), and show where each service stands.

``up`` starts MLflow and the Airflow components first, and the serving process once MLflow is
healthy (it looks up the champion there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dslc.dev.console import make_console, reported
from dslc.dev.stack.distributed import (
    Profile,
    check_redis,
    create_bucket,
    create_databases,
    create_profile,
    delete_bucket,
    delete_queue,
    drop_databases,
    load_profile,
    redacted,
    stop_order,
)
from dslc.dev.stack.environment import s3_credentials, services, url_of
from dslc.dev.stack.health import check_ports, probe, wait_healthy
from dslc.dev.stack.migrations import migrate_if_needed
from dslc.dev.stack.paths import log_path, logs_dir, password_file
from dslc.dev.stack.processes import (
    ProcessRecord,
    cleanup_pid_files,
    create_time,
    owns_group,
    read_record,
    running,
    spawn,
    stop_groups,
)
from dslc.dev.stack.secrets import (
    admin_password,
    airflow_secrets,
    mlflow_credentials,
    seed_password,
)
from dslc.settings import get_settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import Console

    from dslc.settings import Settings

# Scheduler first, so no new tasks start while the rest stops.
STOP_ORDER = ("scheduler", "triggerer", "dag-processor", "serving", "api-server", "mlflow")
STOP_GRACE_SECONDS = 20.0


def up(
    timeout: float = 180.0, settings: Settings | None = None, *, distributed: bool = False
) -> None:
    """Start whatever part of the stack is not running and wait until all of it is healthy.

    ``distributed`` chooses the distributed profile (:mod:`.distributed`) for a new state dir;
    a state dir keeps the profile it was first started with.

    Idempotent: a service whose recorded process is alive (same pid and create time) is left
    alone. Raises :class:`StackError` (a clean CLI error) if a port is taken by another program,
    a process dies while starting, or the stack is not healthy within ``timeout`` seconds.
    """
    with reported():
        _up(timeout, settings or get_settings(), distributed)


def _up(timeout: float, settings: Settings, want_distributed: bool) -> None:
    console = make_console()
    profile = load_profile(settings)
    if profile is None and want_distributed:
        profile = create_profile(settings)
    if profile is not None:
        console.print(
            f"Distributed stack [bold]{profile.token}[/bold]: PostgreSQL "
            f"{redacted(profile.postgres_url)}, Redis {profile.redis_url}, S3 "
            f"{profile.s3_endpoint}{' (local)' if profile.local_s3 else ''}, "
            f"{profile.workers} Celery workers"
        )
    for sub in ("logs", "pids", "mlflow/artifacts", "airflow"):
        (settings.state_dir / sub).mkdir(parents=True, exist_ok=True)
    names = services(settings)
    alive = running(settings)
    missing = [name for name in names if name not in alive]
    if alive:
        console.print(f"Already running: {', '.join(sorted(alive))}")
    # A service whose main process died but whose children live on (e.g. a uvicorn worker
    # still holding the port) is stopped before it is started again.
    orphans = [
        record
        for record in (read_record(settings, name) for name in missing)
        if record is not None and owns_group(record)
    ]
    if orphans:
        console.print(f"Cleaning up leftovers of {', '.join(r.name for r in orphans)}")
        stop_groups(orphans, STOP_GRACE_SECONDS, console)
    check_ports(settings, missing)
    seed_password(settings)
    airflow_secrets(settings)
    mlflow_credentials(settings)
    started: dict[str, ProcessRecord] = {}
    elapsed = 0.0
    if profile is not None:
        elapsed += _provision(settings, profile, console, timeout, alive, started, missing)
    if any(name != "mlflow" for name in missing):
        migrate_if_needed(settings, console)
    # Serving starts last: it needs MLflow up to find the champion it serves.
    for name in (n for n in missing if n not in ("serving", *started)):
        started[name] = spawn(settings, name)
        console.print(f"Started {name} (pid {started[name].pid}), log: {log_path(settings, name)}")
    core = [n for n in names if n != "serving"]
    elapsed += wait_healthy(settings, console, timeout, {**alive, **started}, core)
    if "serving" in missing:
        record = started["serving"] = spawn(settings, "serving")
        console.print(
            f"Started serving (pid {record.pid}) on {record.argv[record.argv.index('--model') + 1]}"
            f", log: {log_path(settings, 'serving')}"
        )
        elapsed += wait_healthy(settings, console, timeout, {**alive, **started})
    console.print(f"[green]Stack healthy[/green] after {elapsed:.1f}s")
    _print_access(console, settings)


def _provision(
    settings: Settings,
    profile: Profile,
    console: Console,
    timeout: float,
    alive: dict[str, ProcessRecord],
    started: dict[str, ProcessRecord],
    missing: list[str],
) -> float:
    """The distributed stack's servers: its databases, the broker, its S3 server and bucket."""
    created = create_databases(profile)
    if created:
        console.print(f"Created PostgreSQL databases {', '.join(created)}")
    check_redis(profile)
    elapsed = 0.0
    if "s3" in missing:
        if (settings.state_dir / "airflow" / ".dslc-db-migrated").exists():
            console.print(
                "[yellow]The local S3 server was not running: it starts empty, so this "
                "stack's lake and MLflow artifacts are gone while its databases still name "
                "them. `dslc down` and `dslc up` start afresh.[/yellow]"
            )
        started["s3"] = spawn(settings, "s3")
        console.print(f"Started s3 (pid {started['s3'].pid}), log: {log_path(settings, 's3')}")
        elapsed = wait_healthy(settings, console, timeout, {**alive, **started}, ["s3"])
    create_bucket(profile, *s3_credentials(settings))
    return elapsed


def _print_access(console: Console, settings: Settings) -> None:
    from rich.markup import escape

    console.print(f"  Airflow UI   {settings.airflow_url}")
    console.print(f"  MLflow UI    http://{settings.mlflow_host}:{settings.mlflow_port}")
    console.print(f"  Serving API  {settings.serving_base_url}  (docs: /docs)")
    source = (
        "DSLC_AIRFLOW_PASSWORD"
        if settings.airflow_password is not None
        else str(password_file(settings))
    )
    console.print(
        f"  Airflow login  user [bold]{settings.airflow_username}[/bold]  "
        f"password [bold]{escape(admin_password(settings))}[/bold]  (from {escape(source)})",
    )
    user, password = mlflow_credentials(settings)
    source = (
        "DSLC_MLFLOW_PASSWORD"
        if settings.mlflow_password is not None
        else str(settings.state_dir / "secrets" / "mlflow.json")
    )
    console.print(
        f"  MLflow login   user [bold]{escape(user)}[/bold]  "
        f"password [bold]{escape(password)}[/bold]  (from {escape(source)})",
    )
    console.print(f"  Logs         {logs_dir(settings)}")
    console.print(
        "  New DAGs are unpaused at creation (AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION)."
    )


def _stoppable(settings: Settings) -> Iterator[tuple[str, ProcessRecord | None]]:
    profile = load_profile(settings)
    for name in STOP_ORDER if profile is None else stop_order(profile):
        yield name, read_record(settings, name)


def down(
    settings: Settings | None = None, grace: float = STOP_GRACE_SECONDS, *, purge: bool = False
) -> None:
    """Stop the process groups `up` started (SIGTERM, then SIGKILL after ``grace`` seconds).

    Only recorded processes that are still ours are signalled; pid files are removed. Idempotent.
    ``purge`` (distributed stack) also drops what ``up`` created on the servers: its databases,
    its Celery queue and its bucket. A distributed stack on its own local S3 server is always
    purged: the server's objects are gone once it stops.
    """
    with reported():
        settings = settings or get_settings()
        profile = load_profile(settings)
        if profile is not None and profile.local_s3 and not purge:
            # Its objects die with the local S3 server: databases that still named them would
            # describe a lake and models that are gone.
            make_console().print(
                "The stack's local S3 server keeps the lake and MLflow's artifacts in memory, "
                "so stopping it loses them: its databases and queue are dropped too, and the "
                "next `dslc up` starts afresh (set DSLC_S3_ENDPOINT_URL for an S3 that keeps "
                "them)."
            )
            purge = True
        _down(settings, grace)
        if purge:
            _purge(settings)


def _purge(settings: Settings) -> None:
    console = make_console()
    profile = load_profile(settings)
    if profile is None:
        console.print("Nothing to purge: this state dir runs the embedded stack (files only).")
        return
    if not profile.local_s3:
        count = delete_bucket(profile, *s3_credentials(settings))
        console.print(f"Deleted bucket {profile.bucket} ({count} objects)")
    keys = delete_queue(profile)
    console.print(f"Deleted Celery queue {profile.queue} from Redis ({keys} keys)")
    dropped = drop_databases(profile)
    console.print(f"Dropped PostgreSQL databases {', '.join(dropped) or '(none left)'}")
    # The state dir keeps its profile (token, servers): the next `up` recreates all of it.
    (settings.state_dir / "airflow" / ".dslc-db-migrated").unlink(missing_ok=True)


def _down(settings: Settings, grace: float) -> None:
    console = make_console()
    targets: list[ProcessRecord] = []
    for name, record in _stoppable(settings):
        if record is None:
            continue
        if owns_group(record):
            targets.append(record)
        elif create_time(record.pid) is None:
            console.print(f"{name} (pid {record.pid}) had already exited")
        else:
            console.print(f"{name}: pid {record.pid} now belongs to another program; left alone")
    if not targets:
        console.print("Nothing to stop.")
    else:
        stop_groups(targets, grace, console)
        for record in targets:
            console.print(f"Stopped {record.name} (pid {record.pid})")
    cleanup_pid_files(settings, services(settings))


def status(settings: Settings | None = None) -> int:
    """Print a table (service, pid, url, healthy).

    Returns 0 if every service is running and healthy, 3 if none is running, 1 otherwise.
    """
    from rich.table import Table

    settings = settings or get_settings()
    console = make_console()
    alive = running(settings)
    health = probe(settings)
    table = Table(title=f"dslc stack ({settings.state_dir})")
    for column in ("service", "pid", "url", "healthy"):
        table.add_column(column)
    all_ok = True
    for name in services(settings):
        record = alive.get(name)
        ok = record is not None and health[name]
        all_ok = all_ok and ok
        table.add_row(
            name,
            str(record.pid) if record else "-",
            url_of(settings, name),
            "[green]yes[/green]" if ok else ("[red]no[/red]" if record else "not running"),
        )
    console.print(table)
    if all_ok:
        return 0
    return 3 if not alive else 1
