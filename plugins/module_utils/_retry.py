# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retries with jittered exponential backoff, shared by every provider and check.

Only errors the caller marks as transient are retried; everything else surfaces at once
(a refused DNS update or a wrong password never gets better by asking again).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random
import time


class RetryBudgetExceeded(Exception):
    """Raised when every attempt failed with a transient error; wraps the last one."""

    def __init__(self, attempts, elapsed, last_error):
        self.attempts = attempts
        self.elapsed = elapsed
        self.last_error = last_error
        super(RetryBudgetExceeded, self).__init__(
            "gave up after %d attempts in %.1fs: %s" % (attempts, elapsed, last_error)
        )


def backoff_delays(base=0.05, cap=2.0, rng=None):
    """Yield "full jitter" delays (AWS architecture blog): uniform(0, min(cap, base * 2**n))."""
    rng = rng or random.SystemRandom()
    attempt = 0
    while True:
        yield rng.uniform(0, min(cap, base * (2 ** attempt)))
        attempt += 1


def call_with_retries(func, is_transient, timeout=30.0, max_attempts=None, base=0.05, cap=2.0,
                      sleep=time.sleep, clock=time.monotonic, on_retry=None):
    """Call `func()` until it returns, a non-transient error is raised, or the budget runs out.

    `is_transient(exc)` decides whether an exception is worth another attempt. The budget is
    `timeout` seconds of wall time and, optionally, `max_attempts` calls.
    """
    started = clock()
    delays = backoff_delays(base=base, cap=cap)
    attempts = 0
    while True:
        attempts += 1
        try:
            return func()
        except Exception as exc:  # pylint: disable=broad-except
            if not is_transient(exc):
                raise
            elapsed = clock() - started
            delay = next(delays)
            out_of_attempts = max_attempts is not None and attempts >= max_attempts
            if out_of_attempts or elapsed + delay > timeout:
                raise RetryBudgetExceeded(attempts, elapsed, exc) from exc
            if on_retry is not None:
                on_retry(attempts, exc, delay)
            sleep(delay)
