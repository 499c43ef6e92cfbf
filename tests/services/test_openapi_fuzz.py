"""Schemathesis from the OpenAPI documents the services serve: generated requests, 0 server errors.

Runs in-process (WSGI) against real PostgreSQL and moto S3, with both valid (positive) and
invalid (negative) inputs derived from the specs. Hypothesis is driven directly: Schemathesis'
pytest plugin does not run under this repo's pytest 9.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

EXAMPLES = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def run_cases(strategy, counts: dict[str, int], label: str) -> None:
    @given(case=strategy)
    @EXAMPLES
    def run(case) -> None:
        counts[label] += 1
        case.call_and_validate(checks=[not_a_server_error])

    run()


def fuzz_every_operation(app) -> dict[str, int]:
    """Send generated requests to each operation; returns how many cases each one ran."""
    schema = schemathesis.openapi.from_wsgi("/openapi.yaml", app)
    counts: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.label} {mode.value}"
            counts[label] = 0
            try:
                run_cases(operation.as_strategy(generation_mode=mode), counts, label)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, label  # e.g. /healthz: nothing to make invalid
                del counts[label]
    return counts


def test_orders_api_has_no_server_errors(app_a):
    counts = fuzz_every_operation(app_a)
    print(f"orders: {sum(counts.values())} generated requests, 0 server errors: {counts}")
    assert {"POST /orders positive", "GET /orders/{order_id} positive", "GET /orders negative"} <= set(counts)
    assert sum(counts.values()) > 100


def test_documents_api_has_no_server_errors(app_b):
    counts = fuzz_every_operation(app_b)
    print(f"documents: {sum(counts.values())} generated requests, 0 server errors: {counts}")
    assert {"POST /documents positive", "GET /documents/{document_id}/content positive"} <= set(counts)
    assert sum(counts.values()) > 100
