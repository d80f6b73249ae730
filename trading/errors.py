"""Exceptions the pipeline's stages raise to say what the task around them should do next."""

from __future__ import annotations


class RetryLater(Exception):
    """The broker could not be reached; nothing was sent. The task retries after `countdown` seconds."""

    def __init__(self, message: str, *, countdown: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.countdown = countdown


class WaitForEarlier(Exception):
    """An earlier signal of this recorder (or decision of this trader) is unfinished: run this one later.

    Signals are acted on in the order they arrived: a close and the entry after it, handled by two workers in
    the wrong order, would leave the account flat instead of short.
    """


class LeaseLost(Exception):
    """This worker's claim on a decision lapsed and was taken over: it must stop before any broker call."""
