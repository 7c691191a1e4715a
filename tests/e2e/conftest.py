"""The real embedded stack (Airflow 3 + MLflow) on free loopback ports, once for tests/e2e.

The stack gets its own DSLC_HOME (so its own AIRFLOW_HOME, metadata DB, lake and logs) in a
temp dir; ``dslc.dev.stack`` builds the child environment explicitly, so the test session's
AIRFLOW_HOME set by the root conftest never leaks into the stack's processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dslc.settings import Settings
from tests.support import ephemeral_stack


@pytest.fixture(scope="package")
def e2e_stack() -> Iterator[Settings]:
    """Start the stack with ``dslc.dev.stack.up()``; stop it with ``down()`` at the end."""
    timeout = float(os.environ.get("DSLC_E2E_UP_TIMEOUT", "300"))
    with ephemeral_stack(prefix="dslc-e2e-", up_timeout=timeout) as settings:
        yield settings
