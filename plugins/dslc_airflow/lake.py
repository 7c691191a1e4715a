"""The lake as tasks see it: an s3:// lake takes its credentials from an Airflow connection.

``dslc`` knows nothing of Airflow; this adapter builds its filesystem through
``ObjectStoragePath`` (amazon provider for s3://), so file:// and s3:// share one code path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dslc.lake import Lake


def lake() -> Lake:
    """The lake at ``DSLC_LAKE_URL``; an s3:// one through connection ``DSLC_LAKE_CONN_ID``."""
    from dslc.lake import Lake
    from dslc.settings import get_settings

    settings = get_settings()
    url = settings.lake
    if url.startswith("s3://") and settings.lake_conn_id:
        from airflow.sdk import ObjectStoragePath

        fs = ObjectStoragePath(url, conn_id=settings.lake_conn_id).fs
        return Lake(url, fs=fs)
    return Lake(url)
