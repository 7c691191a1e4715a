"""How tasks turn the lifecycle's errors into Airflow outcomes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_retry_on(
    *user_errors: type[BaseException], retry_on: tuple[type[BaseException], ...] = ()
) -> Iterator[None]:
    """Fail the task without retries on errors the user must fix (bad data, bad params).

    ``retry_on`` lists subclasses that are transient (e.g. a server down) and keep Airflow's
    retries.
    """
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except retry_on:
        raise
    except user_errors as e:
        raise AirflowFailException(str(e)) from e
