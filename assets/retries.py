"""Step retries for transient I/O failures, never for bad input.

Every table read and write already retries a transient error a few times (`catalog.io.retry_transient`); when
those tries are spent (a file server away for longer), the whole step is retried by Dagster after a pause.
Any other error, bad input included, fails the step at once.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TypeVar

import dagster as dg

from catalog.io import TRANSIENT_ERRNOS

STEP_RETRIES = 2
STEP_RETRY_WAIT_S = 10.0

F = TypeVar("F", bound=Callable)


def transient(error: BaseException) -> bool:
    """Whether `error`, or an error that caused it, is an OS error a later try may not meet."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS:
            return True
        error = error.__cause__ or error.__context__
    return False


def _raise_for(error: Exception) -> None:
    """Raise a Dagster retry request for a transient `error`; return for any other."""
    if transient(error):
        raise dg.RetryRequested(max_retries=STEP_RETRIES, seconds_to_wait=STEP_RETRY_WAIT_S) from error


def retried_when_transient(compute: F) -> F:
    """Wrap an asset's compute function (plain or generator) so that a transient I/O error asks Dagster to
    rerun the step (`STEP_RETRIES` times, `STEP_RETRY_WAIT_S` s apart); the signature is kept for Dagster."""
    if inspect.isgeneratorfunction(compute):
        @functools.wraps(compute)
        def generator(*args, **kwargs):
            try:
                yield from compute(*args, **kwargs)
            except Exception as error:
                _raise_for(error)
                raise
        return generator  # type: ignore[return-value]

    @functools.wraps(compute)
    def plain(*args, **kwargs):
        try:
            return compute(*args, **kwargs)
        except Exception as error:
            _raise_for(error)
            raise
    return plain  # type: ignore[return-value]
