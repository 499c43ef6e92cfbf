"""Backoff behaviour of the shared retry helper (pure logic, fake clock)."""

from __future__ import annotations

import pytest
from ansible_collections.cloudphoenix.stack.plugins.module_utils._retry import (
    RetryBudgetExceeded,
    backoff_delays,
    call_with_retries,
)


class Transient(Exception):
    pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def test_transient_errors_are_retried_until_success() -> None:
    clock = FakeClock()
    outcomes = iter([Transient("busy"), Transient("busy"), "ok"])

    def flaky():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    result = call_with_retries(flaky, lambda e: isinstance(e, Transient), sleep=clock.sleep, clock=clock)
    assert result == "ok"
    assert len(clock.sleeps) == 2


def test_permanent_error_is_raised_at_once() -> None:
    clock = FakeClock()
    calls = []

    def refused():
        calls.append(1)
        raise ValueError("REFUSED")

    with pytest.raises(ValueError, match="REFUSED"):
        call_with_retries(refused, lambda e: isinstance(e, Transient), sleep=clock.sleep, clock=clock)
    assert calls == [1] and clock.sleeps == []


def test_budget_is_bounded_by_time_and_reports_last_error() -> None:
    clock = FakeClock()

    def always_busy():
        raise Transient("throttled")

    with pytest.raises(RetryBudgetExceeded, match="throttled") as info:
        call_with_retries(always_busy, lambda e: True, timeout=5, sleep=clock.sleep, clock=clock)
    assert clock.now <= 5
    assert info.value.attempts > 3


def test_delays_are_jittered_and_capped() -> None:
    delays = backoff_delays(base=0.1, cap=1.0)
    values = [next(delays) for _attempt in range(50)]
    assert all(0 <= v <= 1.0 for v in values)
    assert len({round(v, 6) for v in values}) > 40  # jitter: not a fixed schedule
