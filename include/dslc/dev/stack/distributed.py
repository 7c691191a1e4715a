"""The distributed profile (``dslc up --distributed``): the same Airflow, MLflow and serving
processes, on the production topology: PostgreSQL for Airflow's metadata and MLflow's stores,
CeleryExecutor with a Redis broker, a PostgreSQL result backend and several workers, and S3 for
the lake and MLflow's artifacts.

The servers are the platform's (``DSLC_POSTGRES_URL``, ``DSLC_REDIS_URL``,
``DSLC_S3_ENDPOINT_URL``); each stack creates its own databases, Celery queue and bucket there,
named after a token generated once per state dir, so several stacks can share one server. With
no ``DSLC_S3_ENDPOINT_URL`` the stack runs its own S3-compatible server on loopback
(``moto_server``, a dev dependency), which keeps its objects in memory until it stops.

The profile is chosen by the first ``up`` of a state dir and recorded in
``<state>/profile.json`` with the servers it used, so ``down``, ``status`` and later ``up`` calls
act on the same stack. ``dslc down --purge`` also drops what the stack created on the servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from dslc.dev.stack.errors import StackError

if TYPE_CHECKING:
    from pathlib import Path

    from dslc.settings import Settings

DISTRIBUTED = "distributed"
LAKE_CONN_ID = "lake_s3"
REGION = "us-east-1"
# Stop after Airflow's components, before MLflow: the workers may finish a task on stop.
WORKER_PREFIX = "worker-"
# The lake's S3 client on this stack: its S3 is on loopback and answers in milliseconds, so a
# call left unanswered for 5 s (twice) means the server is down or frozen; the task then
# fails within seconds and Airflow's retries (with backoff, a line each in the UI) take over.
LAKE_S3_CLIENT_CONFIG = {
    "connect_timeout": 2,
    "read_timeout": 5,
    "retries": {"mode": "standard", "total_max_attempts": 2},
}


@dataclass(frozen=True)
class Profile:
    """What ``<state>/profile.json`` records for a distributed stack."""

    token: str
    postgres_url: str
    redis_url: str
    s3_endpoint_url: str | None
    s3_port: int
    workers: int

    @property
    def local_s3(self) -> bool:
        """Whether the stack runs its own S3 server (no DSLC_S3_ENDPOINT_URL)."""
        return self.s3_endpoint_url is None

    @property
    def s3_endpoint(self) -> str:
        return self.s3_endpoint_url or f"http://127.0.0.1:{self.s3_port}"

    @property
    def airflow_db(self) -> str:
        return f"dslc_{self.token}_airflow"

    @property
    def mlflow_db(self) -> str:
        return f"dslc_{self.token}_mlflow"

    @property
    def mlflow_auth_db(self) -> str:
        return f"dslc_{self.token}_mlflow_auth"

    @property
    def databases(self) -> tuple[str, ...]:
        return (self.airflow_db, self.mlflow_db, self.mlflow_auth_db)

    @property
    def bucket(self) -> str:
        return f"dslc-{self.token}"

    @property
    def queue(self) -> str:
        """The Celery queue of this stack's tasks (its workers consume only this one)."""
        return f"dslc-{self.token}"

    @property
    def lake_url(self) -> str:
        return f"s3://{self.bucket}/lake"

    @property
    def artifacts_url(self) -> str:
        return f"s3://{self.bucket}/mlflow-artifacts"

    def worker_names(self) -> tuple[str, ...]:
        return tuple(f"{WORKER_PREFIX}{i}" for i in range(1, self.workers + 1))

    def database_url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        """The URL of ``database`` on this stack's PostgreSQL server."""
        parts = urlsplit(self.postgres_url)
        return urlunsplit((driver, parts.netloc, f"/{database}", parts.query, ""))


def profile_path(settings: Settings) -> Path:
    return settings.state_dir / "profile.json"


def load_profile(settings: Settings) -> Profile | None:
    """The distributed profile of this state dir, or None for the embedded stack."""
    try:
        data: dict[str, Any] = json.loads(profile_path(settings).read_text())
    except FileNotFoundError:
        return None
    if data.get("profile") != DISTRIBUTED:
        return None
    data.pop("profile")
    return Profile(**data)


def create_profile(settings: Settings) -> Profile:
    """Record a new distributed profile for this state dir from the ``DSLC_*`` settings."""
    if (settings.state_dir / "airflow" / "airflow.db").exists():
        raise StackError(
            f"{settings.state_dir} holds an embedded stack (SQLite): run the distributed stack "
            "in another state dir, e.g. DSLC_HOME=.dslc-distributed dslc up --distributed."
        )
    _check_url(settings.postgres_url, ("postgresql", "postgres"), "DSLC_POSTGRES_URL")
    _check_url(settings.redis_url, ("redis", "rediss"), "DSLC_REDIS_URL")
    if settings.s3_endpoint_url is not None:
        _check_url(settings.s3_endpoint_url, ("http", "https"), "DSLC_S3_ENDPOINT_URL")
    profile = Profile(
        token=secrets.token_hex(4),
        postgres_url=settings.postgres_url,
        redis_url=settings.redis_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_port=settings.s3_port,
        workers=settings.celery_workers,
    )
    path = profile_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"profile": DISTRIBUTED, **asdict(profile)}, indent=2) + "\n")
    return profile


def _check_url(url: str, schemes: tuple[str, ...], name: str) -> None:
    scheme = urlsplit(url).scheme.split("+", 1)[0]
    if scheme not in schemes or not urlsplit(url).hostname:
        raise StackError(f"{name}={url!r} is not a {' or '.join(schemes)}:// URL with a host.")


def services(profile: Profile) -> tuple[str, ...]:
    """The distributed stack's services, in start order."""
    first = ("s3",) if profile.local_s3 else ()
    return (
        *first,
        "mlflow",
        "api-server",
        "scheduler",
        "dag-processor",
        "triggerer",
        *profile.worker_names(),
        "serving",
    )


def stop_order(profile: Profile) -> tuple[str, ...]:
    """Scheduler first (no new tasks), workers after the rest of Airflow, S3 last."""
    last = ("s3",) if profile.local_s3 else ()
    return (
        "scheduler",
        "triggerer",
        "dag-processor",
        *profile.worker_names(),
        "serving",
        "api-server",
        "mlflow",
        *last,
    )


def worker_hostname() -> str:
    """Airflow's ``[core] hostname_callable`` on the stack's Celery workers: the worker's name
    (``DSLC_WORKER_NAME``, e.g. ``worker-1@vm``), so the UI and the API tell apart the workers of
    one machine; the machine's name elsewhere."""
    import socket

    return os.environ.get("DSLC_WORKER_NAME") or socket.getfqdn()


# --- credentials ----------------------------------------------------------------------------


def s3_credentials(settings: Settings, generated: Any) -> tuple[str, str]:
    """The S3 access key id and secret: DSLC_S3_ACCESS_KEY_ID / DSLC_S3_SECRET_ACCESS_KEY, else
    generated once per state dir (the local S3 server accepts any well-formed pair)."""
    if settings.s3_secret_access_key is not None:
        key_id = settings.s3_access_key_id or ""
        if not key_id:
            raise StackError("DSLC_S3_SECRET_ACCESS_KEY is set but DSLC_S3_ACCESS_KEY_ID is not.")
        return key_id, settings.s3_secret_access_key.get_secret_value()
    return (
        settings.s3_access_key_id or generated(settings, "s3", "access_key_id"),
        generated(settings, "s3", "secret_access_key"),
    )


def lake_connection(profile: Profile, key_id: str, secret: str) -> str:
    """``AIRFLOW_CONN_LAKE_S3``: the amazon provider's ``aws`` connection to the stack's S3.

    Its ``config_kwargs`` (botocore's Config) bound each S3 call tighter than the defaults of
    ``dslc_airflow.lake`` (which are for a remote store): see :data:`LAKE_S3_CLIENT_CONFIG`.
    """
    extra = {
        "endpoint_url": profile.s3_endpoint,
        "region_name": REGION,
        "config_kwargs": LAKE_S3_CLIENT_CONFIG,
    }
    # A nested extra only fits a connection URI as JSON in its ``__extra__`` query parameter.
    return (
        f"aws://{quote(key_id, safe='')}:{quote(secret, safe='')}@/"
        f"?__extra__={quote(json.dumps(extra, sort_keys=True), safe='')}"
    )


def s3_env(profile: Profile, key_id: str, secret: str) -> dict[str, str]:
    """The variables boto3/s3fs and MLflow's S3 artifact store read."""
    return {
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": profile.s3_endpoint,
        "MLFLOW_S3_ENDPOINT_URL": profile.s3_endpoint,
    }


# --- provisioning: databases, bucket, queue ----------------------------------------------------


def _admin_connection(profile: Profile) -> Any:
    import psycopg2

    try:
        conn = psycopg2.connect(profile.postgres_url, connect_timeout=10)
    except psycopg2.OperationalError as e:
        raise StackError(
            f"Cannot reach PostgreSQL at {redacted(profile.postgres_url)} "
            f"(DSLC_POSTGRES_URL): {str(e).strip()}"
        ) from None
    conn.autocommit = True
    return conn


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def create_databases(profile: Profile) -> list[str]:
    """Create the stack's databases that do not exist yet; the names created."""
    conn = _admin_connection(profile)
    created = []
    try:
        with conn.cursor() as cur:
            for name in profile.databases:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
                    created.append(name)
    finally:
        conn.close()
    return created


def drop_databases(profile: Profile) -> list[str]:
    """Drop the stack's databases (closing their sessions first); the names dropped."""
    conn = _admin_connection(profile)
    dropped = []
    try:
        with conn.cursor() as cur:
            for name in profile.databases:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    continue
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                cur.execute(f'DROP DATABASE "{name}"')
                dropped.append(name)
    finally:
        conn.close()
    return dropped


def s3_client(profile: Profile, key_id: str, secret: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=profile.s3_endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=REGION,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5),
    )


def create_bucket(profile: Profile, key_id: str, secret: str, timeout: float = 30.0) -> None:
    """Create the stack's bucket unless it exists (waits for a just-started S3 server)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = s3_client(profile, key_id, secret)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.head_bucket(Bucket=profile.bucket)
            return
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise StackError(f"S3 at {profile.s3_endpoint}: {e}") from None
            client.create_bucket(Bucket=profile.bucket)
            return
        except BotoCoreError as e:
            if time.monotonic() > deadline:
                raise StackError(f"S3 at {profile.s3_endpoint} does not answer: {e}") from None
            time.sleep(0.5)


def delete_bucket(profile: Profile, key_id: str, secret: str) -> int:
    """Delete every object of the stack's bucket and the bucket; the number of objects."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = s3_client(profile, key_id, secret)
    count = 0
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=profile.bucket)
        for page in pages:
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=profile.bucket, Delete={"Objects": keys})
                count += len(keys)
        client.delete_bucket(Bucket=profile.bucket)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
            raise StackError(f"S3 at {profile.s3_endpoint}: {e}") from None
    except BotoCoreError as e:
        raise StackError(f"S3 at {profile.s3_endpoint} does not answer: {e}") from None
    return count


def delete_queue(profile: Profile) -> int:
    """Delete the stack's Celery queue (and its routing keys) from Redis; keys deleted."""
    import redis

    client = redis.Redis.from_url(profile.redis_url, socket_timeout=10)
    try:
        # The queue, its kombu bindings (_kombu.binding.<queue>, ..._permanent.<queue>) and
        # its unacked/priority keys all name the queue; keys shared by every stack on this
        # Redis (e.g. _kombu.binding_deadlines) are left alone.
        keys = {k.decode() for k in client.scan_iter(match=f"*{profile.queue}*")}
        return int(client.delete(*keys)) if keys else 0
    except redis.RedisError as e:
        raise StackError(f"Redis at {profile.redis_url}: {e}") from None
    finally:
        with contextlib.suppress(redis.RedisError):
            client.close()


def check_redis(profile: Profile) -> None:
    """Raise a clear error if the broker does not answer."""
    import redis

    client = redis.Redis.from_url(profile.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as e:
        raise StackError(
            f"Cannot reach Redis at {profile.redis_url} (DSLC_REDIS_URL): {e}"
        ) from None
    finally:
        with contextlib.suppress(redis.RedisError):
            client.close()
