"""The lake as tasks see it: an s3:// lake takes its credentials from an Airflow connection.

``dslc`` knows nothing of Airflow; this adapter builds its filesystem through the amazon
provider (``airflow.sdk.io.get_fs``, as ``ObjectStoragePath`` does), so file:// and s3:// share
one code path. Everything is imported inside :func:`lake`: DAG files import this module at parse
time.

An S3 call is bounded (:data:`S3_CLIENT_CONFIG`, unless the connection's ``config_kwargs`` say
otherwise): with the libraries' defaults a call to a server that accepts connections but never
answers retries 25 times (s3fs's 5 tries around botocore's 5) and holds the task for minutes
without a word. Bounded, it fails in well under a minute and Airflow's retries, with their
backoff and a line each in the UI, do the waiting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dslc.lake import Lake

# botocore Config for the lake's S3 client; a key set in the connection's extra
# ``config_kwargs`` wins. Standard retry mode retries throttling and transient errors
# (timeouts included) with jittered backoff.
S3_CLIENT_CONFIG: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 15,
    "retries": {"mode": "standard", "total_max_attempts": 3},
}
# s3fs's own retry loop around each botocore call (default 5): one try, botocore retries.
S3FS_TRIES = 1


def lake() -> Lake:
    """The lake at ``DSLC_LAKE_URL``; an s3:// one through connection ``DSLC_LAKE_CONN_ID``.

    Works in a task (the connection comes through the Task SDK) and outside one, e.g. in tests
    or the CLI (from ``AIRFLOW_CONN_<ID>`` or a configured secrets backend).
    """
    from dslc.lake import Lake
    from dslc.settings import get_settings

    settings = get_settings()
    url = settings.lake
    if url.startswith("s3://") and settings.lake_conn_id:
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException
        from airflow.sdk.io import get_fs

        conn_id = settings.lake_conn_id
        # The amazon provider treats a missing connection as "no connection": it warns and
        # falls back to boto3's default credentials or anonymous access against AWS itself.
        # For the lake that is a misconfiguration, so look the connection up first.
        try:
            conn = Connection.get(conn_id)
        except AirflowNotFoundException as e:
            raise AirflowNotFoundException(
                f"DSLC_LAKE_CONN_ID={conn_id!r} names no Airflow connection, so the lake "
                f"{url} has no credentials. Create an 'aws' connection with that id (e.g. "
                f"AIRFLOW_CONN_{conn_id.upper()}='aws://KEY:SECRET@/?region_name=...') or "
                "unset DSLC_LAKE_CONN_ID to use the default AWS credential chain."
            ) from e
        fs = get_fs("s3", conn_id, s3_client_config(conn.extra_dejson))
        fs.retries = S3FS_TRIES
        return Lake(url, fs=fs)
    return Lake(url)


def s3_client_config(extra: dict[str, Any]) -> dict[str, Any]:
    """The keys of :data:`S3_CLIENT_CONFIG` the connection's ``config_kwargs`` leave unset
    (the provider lays these over the connection's own)."""
    own = extra.get("config_kwargs") or {}
    return {k: v for k, v in S3_CLIENT_CONFIG.items() if k not in own}
