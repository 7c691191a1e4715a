"""dslc: the data-science lifecycle as plain Python, importable without Airflow.

Importing this package does no I/O and imports nothing heavy; each stage lives in its own
module (``sources``, ``lake``, ``ingest``, ``validation``, ``features``, ...).
"""

from __future__ import annotations

__version__ = "0.1.0"
