"""The one exception base of dslc and the two kinds a caller acts on.

Every dslc exception derives from :class:`DslcError`, and most from one of its two kinds:

* :class:`UserError`: the user must fix something (bad input, bad data, bad params or
  configuration). Trying again fails the same way: Airflow tasks fail without retries.
* :class:`ServiceUnavailableError`: a service (MLflow, the serving API, ...) is down or cannot
  be reached. It may come back: Airflow tasks keep their retries.

:class:`NothingToDo` is not a failure: a scheduled run found no work (no data yet, nothing new);
Airflow skips the task and logs the reason.

A class that is both (an unreachable registry is still a registry error) is treated as the
second: callers check :class:`ServiceUnavailableError` first. Anything else, a
:class:`DslcError` of neither kind included, is a bug or an unforeseen failure.

This module imports nothing from dslc, so any module (and the Airflow glue) can import it.
"""

from __future__ import annotations


class DslcError(Exception):
    """Base of every dslc exception; its message says what went wrong and what to do."""


class UserError(DslcError):
    """The user must fix the input, data, params or configuration; retrying cannot help."""


class ServiceUnavailableError(DslcError):
    """A service is down or unreachable; retrying later may succeed."""


class ConfigError(UserError, ValueError):
    """A setting, param or argument has a value dslc cannot use (a threshold, a date).

    A :class:`ValueError` too, so callers that catch ``ValueError`` keep working.
    """


class DataError(UserError, ValueError):
    """Data does not fit what a step needs (a batch without the model's features, a profile)."""


class NothingToDo(DslcError):
    """A scheduled run has nothing to do (no data yet, nothing new); the message says why.

    Raised only for runs nobody asked for by hand: a manual run with the same input fails.
    """
