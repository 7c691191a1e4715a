"""One settings object for the whole project, read lazily from ``DSLC_*`` environment variables.

Nothing here touches the disk or the network at import: call :func:`get_settings` when a value
is needed. Defaults make the embedded stack (SQLite, local files) work with no configuration.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    dataset: str = Field(default="flights", description="The dataset the DAGs process.")

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

    landing_poke_seconds: int = Field(default=30, ge=1)
    landing_timeout_seconds: int = Field(
        default=6 * 3600, ge=1, description="How long ingest waits for a day's landing file."
    )

    # -- training (the `train` DAG) ---------------------------------------------------------
    model_name: str = Field(default="flights_late", description="Registered model in MLflow.")
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

    @property
    def state_dir(self) -> Path:
        """Where the embedded stack keeps pids, logs, databases and the default lake."""
        return self.home or (self.project_root / ".dslc")

    @property
    def lake(self) -> str:
        """The lake's root URL."""
        return self.lake_url or f"file://{self.state_dir / 'lake'}"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.airflow_host}:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        return self.mlflow_tracking_uri or f"http://{self.mlflow_host}:{self.mlflow_port}"


# Airflow's `[database] sql_alchemy_connect_args` for the embedded SQLite DB: wait up to 60 s
# for the write lock instead of SQLite's default 5 s, so the API's writes (e.g. creating a
# 90-run backfill) don't fail while the scheduler holds the lock.
SQLITE_CONNECT_ARGS = {"timeout": 60}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` in tests)."""
    return Settings()
