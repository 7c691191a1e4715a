"""How tasks turn the lifecycle's errors into Airflow outcomes.

dslc sorts its errors by who can fix them (:mod:`dslc.errors`); a task body runs inside
:func:`no_retry_on` and Airflow does the right thing with each kind (and skips the task on
:class:`~dslc.errors.NothingToDo`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from dslc.errors import NothingToDo, ServiceUnavailableError, UserError


@contextmanager
def no_retry_on() -> Iterator[None]:
    """Fail the task without retries on a :class:`~dslc.errors.UserError`.

    A :class:`~dslc.errors.ServiceUnavailableError` (MLflow down, say) keeps Airflow's retries,
    also when it is a user error too (an unreachable registry is a ``RegistryError``). A
    :class:`~dslc.errors.NothingToDo` skips the task, its reason in the task log; anything else
    propagates unchanged.
    """
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    try:
        yield
    except NothingToDo as e:
        logging.getLogger("airflow.task").info("skipping: %s", e)
        raise AirflowSkipException(str(e)) from e
    except ServiceUnavailableError:
        raise
    except UserError as e:
        raise AirflowFailException(str(e)) from e
