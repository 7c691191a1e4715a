"""One settings object for the whole project, read lazily from ``DSLC_*`` environment variables.

Nothing here touches the disk or the network at import: call :func:`get_settings` when a value
is needed. Defaults make the embedded stack (SQLite, local files) work with no configuration.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from dslc.usecase import UseCase


def _default_root() -> Path:
    # include/dslc/settings.py -> the repo root, where .dslc/ (state, logs, lake) lives.
    return Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Runtime configuration; every field can be set as ``DSLC_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="DSLC_", extra="ignore")

    project_root: Path = Field(default_factory=_default_root, description="Repo root.")
    home: Path | None = Field(
        default=None, description="State dir for the embedded stack (default <root>/.dslc)."
    )
    lake_url: str | None = Field(
        default=None,
        description="Root URL of the lake: file:///path or s3://bucket/prefix "
        "(default file://<home>/lake).",
    )
    lake_conn_id: str | None = Field(
        default=None,
        description="Airflow connection id used for an s3:// lake (amazon provider 'aws' type).",
    )
    usecase: str = Field(
        default="flights",
        description="The use case: a package under dslc.usecases or a module path "
        "defining USECASE.",
    )
    dataset: str = Field(
        default="", description="The dataset the DAGs process (default: the use case's primary)."
    )

    airflow_host: str = "127.0.0.1"
    airflow_port: int = 8080
    airflow_username: str = "admin"
    airflow_password: SecretStr | None = Field(
        default=None,
        description="Airflow API password (default: read from the embedded stack's "
        "generated password file).",
    )
    mlflow_host: str = "127.0.0.1"
    mlflow_port: int = 5000
    mlflow_tracking_uri: str | None = None
    mlflow_username: str = Field(
        default="admin", min_length=1, description="MLflow basic-auth user (the stack's admin)."
    )
    mlflow_password: SecretStr | None = Field(
        default=None,
        description="MLflow basic-auth password (default: the embedded stack's generated secret; "
        "MLflow takes it as the admin's only when it first creates its auth DB).",
    )

    landing_poke_seconds: int = Field(default=30, ge=1)
    landing_timeout_seconds: int = Field(
        default=6 * 3600, ge=1, description="How long ingest waits for a day's landing file."
    )
    skip_days_past_source: bool = Field(
        default=True,
        description="Scheduled ingest and drift_monitor runs for a day after the use case "
        "source's last day (flights: 2013-12-31) skip at once, saying nothing will land: the "
        "demo replays a finite source, so the scheduled run of 'today' has no data. Set false "
        "when a live upstream lands days past the source: such runs then wait as usual.",
    )

    # -- training (the `train` DAG) ---------------------------------------------------------
    model_name: str = Field(
        default="", description="Registered model in MLflow (default: the use case's)."
    )
    mlflow_experiment: str = Field(default="dslc-train", description="MLflow experiment name.")
    train_window_days: int = Field(default=60, ge=1, description="Default training window.")
    train_min_days: int = Field(
        default=7, ge=3, description="Fewest published feature days a training window may have."
    )
    train_min_rows: int = Field(
        default=5_000, ge=100, description="Fewest feature rows a training window may have."
    )
    promote_tolerance: float = Field(
        default=0.01, ge=0, le=1, description="How much lower a challenger's ROC AUC may be."
    )
    promote_auc_floor: float = Field(
        default=0.6, ge=0, le=1, description="Holdout ROC AUC below which nothing is promoted."
    )

    # -- serving and deploy (dslc.serving, dslc.deploy) ------------------------------------
    serving_host: str = "127.0.0.1"
    serving_port: int = 8000
    serving_admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for the serving admin API (default: the embedded stack's "
        "generated secret).",
    )
    serving_url: str | None = Field(
        default=None, description="Where deploy/demo reach the serving API (default host:port)."
    )
    serving_threshold: float = Field(
        default=0.5, gt=0, lt=1, description="Probability at or above which a flight is late."
    )
    serving_max_records: int = Field(
        default=1_000, ge=1, description="Most records one /predict request may carry."
    )
    serving_max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest /predict body accepted, in bytes."
    )
    serving_log_flush_seconds: float = Field(
        default=2.0, gt=0, description="How often the prediction log is flushed to the lake."
    )
    serving_log_max_rows: int = Field(
        default=50_000, ge=1, description="Rows buffered before the prediction log flushes."
    )
    deploy_target: str = Field(
        default="local", pattern="^(local|kubernetes)$", description="local or kubernetes."
    )
    deploy_timeout_seconds: float = Field(default=300.0, gt=0)
    deploy_smoke_rows: int = Field(
        default=200, ge=1, description="Holdout rows compared online vs offline in the smoke test."
    )
    k8s_conn_id: str = Field(
        default="kubernetes_default", description="Airflow connection of the cluster."
    )
    k8s_namespace: str = "dslc"
    k8s_image: str = Field(default="dslc:latest", description="Image of the serving pods.")
    k8s_service_url: str | None = Field(
        default=None, description="URL the smoke test reaches the Service at (in-cluster DNS)."
    )

    # -- drift (dslc.drift, the drift_monitor DAG) -----------------------------------------
    drift_psi_threshold: float = Field(
        default=0.2, gt=0, description="PSI at or above which a feature has drifted."
    )
    drift_share_threshold: float = Field(
        default=0.3, gt=0, le=1, description="Share of drifted features that is dataset drift."
    )
    drift_top_features: int = Field(
        default=3,
        ge=0,
        description="The model's N most important features: any drifting is dataset drift.",
    )
    drift_persistence: int = Field(
        default=2, ge=1, description="Consecutive drifted windows before retraining."
    )
    drift_cooldown_days: int = Field(
        default=7,
        ge=0,
        description="Days of data time (logical dates, so backfills behave) "
        "between two triggered retrains.",
    )
    drift_auc_tolerance: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Drop in ROC AUC vs holdout that is performance drift.",
    )
    drift_retrain_enabled: bool = Field(
        default=True, description="Kill switch: false monitors without triggering retraining."
    )

    # -- notifications (dslc.notify, the dslc_airflow notifiers) -----------------------------
    notify_emails: str = Field(
        default="",
        description="Comma-separated e-mail addresses told about triggered retrains, promotions, "
        "rejections, deploy rollbacks and failed tasks of train, drift_monitor and deploy. "
        "Empty (the default): nothing is sent.",
    )
    smtp_conn_id: str = Field(
        default="smtp_default",
        min_length=1,
        description="Airflow connection (SMTP provider, type 'smtp') the e-mails go through: "
        "host, port, login, password, and the sender as its `from_email` extra.",
    )

    # The distributed stack (`dslc up --distributed`): the servers it runs on. Each stack
    # creates its own databases, Celery queue and bucket there (`dslc down --purge` drops them).
    postgres_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        description="PostgreSQL server for the distributed stack (a user that may create "
        "databases).",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Celery broker of the distributed stack."
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint of the distributed stack (default: a local S3-compatible server "
        "on DSLC_S3_PORT, started with the stack).",
    )
    s3_port: int = Field(default=9000, description="Port of the distributed stack's local S3.")
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="S3 secret (default: generated per state dir, local S3 only)."
    )
    celery_workers: int = Field(
        default=2, ge=1, le=16, description="Celery workers the distributed stack starts."
    )

    @field_validator("lake_url")
    @classmethod
    def _check_lake_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("file://", "s3://", "memory://")):
            raise ValueError(
                f"DSLC_LAKE_URL={value!r} is not supported: use file:///abs/path or "
                "s3://bucket/prefix"
            )
        return value.rstrip("/")

    @field_validator("notify_emails")
    @classmethod
    def _check_notify_emails(cls, value: str) -> str:
        from dslc.notify import parse_addresses

        parse_addresses(value)  # raises naming the entry that is not an address
        return value

    @model_validator(mode="after")
    def _usecase_defaults(self) -> Settings:
        if not self.dataset or not self.model_name:
            from dslc.usecase import load_usecase

            usecase = load_usecase(self.usecase)
            self.dataset = self.dataset or usecase.primary.name
            self.model_name = self.model_name or usecase.model_name
        return self

    @property
    def state_dir(self) -> Path:
        """Where the embedded stack keeps pids, logs, databases and the default lake."""
        return self.home or (self.project_root / ".dslc")

    @property
    def lake(self) -> str:
        """The lake's root URL."""
        return self.lake_url or f"file://{self.state_dir / 'lake'}"

    @property
    def notify_recipients(self) -> list[str]:
        """The addresses notifications go to (empty: notifications are off)."""
        from dslc.notify import parse_addresses

        return parse_addresses(self.notify_emails)

    @property
    def airflow_url(self) -> str:
        return f"http://{self.airflow_host}:{self.airflow_port}"

    @property
    def serving_base_url(self) -> str:
        return (self.serving_url or f"http://{self.serving_host}:{self.serving_port}").rstrip("/")

    @property
    def mlflow_url(self) -> str:
        return self.mlflow_tracking_uri or f"http://{self.mlflow_host}:{self.mlflow_port}"


# The environment variables that carry secrets into the stack's processes. Airflow masks their
# names (`[core] sensitive_var_conn_names`) and, in task processes, their values (the
# dslc_masking plugin), so none of them shows up in a log or a rendered template.
SECRET_ENV_NAMES = (
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "DSLC_MLFLOW_PASSWORD",
    "DSLC_SERVING_ADMIN_TOKEN",
    "DSLC_AIRFLOW_PASSWORD",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "DSLC_S3_SECRET_ACCESS_KEY",
    "AWS_SECRET_ACCESS_KEY",
)

# Airflow's `[database] sql_alchemy_connect_args` for the embedded SQLite DB: wait up to 60 s
# for the write lock instead of SQLite's default 5 s, so the API's writes (e.g. creating a
# 90-run backfill) don't fail while the scheduler holds the lock.
SQLITE_CONNECT_ARGS = {"timeout": 60}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` in tests)."""
    return Settings()


def get_usecase() -> UseCase:
    """The use case the settings select (``DSLC_USECASE``)."""
    from dslc.usecase import load_usecase

    return load_usecase(get_settings().usecase)
