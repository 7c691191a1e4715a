"""The lake as tasks see it: an s3:// lake takes its credentials from an Airflow connection.

``dslc`` knows nothing of Airflow; this adapter builds its filesystem through
``ObjectStoragePath`` (amazon provider for s3://), so file:// and s3:// share one code path.
Everything is imported inside :func:`lake`: DAG files import this module at parse time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dslc.lake import Lake


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
        from airflow.sdk import Connection, ObjectStoragePath
        from airflow.sdk.exceptions import AirflowNotFoundException

        conn_id = settings.lake_conn_id
        # The amazon provider treats a missing connection as "no connection": it warns and
        # falls back to boto3's default credentials or anonymous access against AWS itself.
        # For the lake that is a misconfiguration, so look the connection up first.
        try:
            Connection.get(conn_id)
        except AirflowNotFoundException as e:
            raise AirflowNotFoundException(
                f"DSLC_LAKE_CONN_ID={conn_id!r} names no Airflow connection, so the lake "
                f"{url} has no credentials. Create an 'aws' connection with that id (e.g. "
                f"AIRFLOW_CONN_{conn_id.upper()}='aws://KEY:SECRET@/?region_name=...') or "
                "unset DSLC_LAKE_CONN_ID to use the default AWS credential chain."
            ) from e
        fs = ObjectStoragePath(url, conn_id=conn_id).fs
        return Lake(url, fs=fs)
    return Lake(url)
