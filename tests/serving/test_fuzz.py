"""Schema-driven fuzzing of the API (schemathesis): no request the OpenAPI spec allows
may get a server error, and every answer must be one the spec declares, in the shape it
declares (status, content type, body schema).

Bounded: a fixed number of generated requests per operation (derandomised, so a run is
repeatable) and no deadline per example, as a forecast simulates; about 30 s.
Driven through schemathesis' Python API with Hypothesis' ``@given`` rather than its pytest
plugin, whose fixture loader does not work with pytest 9.
"""

from __future__ import annotations

from collections import Counter

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from serving.app import create_app
from serving.settings import Settings
from serving.store import ModelStore
from tests.serving.conftest import KEY

EXAMPLES_PER_OPERATION = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def test_generated_requests_get_no_server_error_and_answers_match_the_spec(
        store: ModelStore) -> None:
    app_settings = Settings(api_key=KEY, environment="production", expose_docs=True,
                            load_models_on_startup=False, forecast_simulations=100)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(app_settings, store))
    # reload takes no input and reloads from MLflow (~1 s); test_api covers it
    operations = [result.ok() for result in schema.get_all_operations()
                  if not result.ok().path.endswith("/reload")]
    fuzzed = [f"{op.method.upper()} {op.path}" for op in operations]
    assert {"POST /v1/predict", "POST /v1/predict/batch", "GET /v1/forecast",
            "POST /v1/forecast"} <= set(fuzzed)
    failures: list[str] = []
    bodies: Counter[tuple[str, str | None]] = Counter()
    statuses: Counter[tuple[str, int]] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                  database=None, suppress_health_check=list(HealthCheck))
        def request_gets_a_declared_answer(case: schemathesis.Case) -> None:
            label = f"{case.method} {case.formatted_path}"
            bodies[(label, case.media_type)] += 1
            try:
                response = case.call_and_validate(headers={"X-API-Key": KEY}, checks=CHECKS)
            except Exception as exc:  # a check failed: collect all, report together
                failures.append(f"{label} with {case.media_type} body "
                                f"{str(case.body)[:200]}: {str(exc)[:600]}")
                return
            statuses[(label, response.status_code)] += 1

        request_gets_a_declared_answer()
    assert not failures, "\n\n".join(failures)
    # the batch route's spec is whole: both of its bodies are generated, and some are
    # valid enough to be scored
    assert bodies[("POST /v1/predict/batch", "application/json")] > 0, bodies
    assert bodies[("POST /v1/predict/batch", "multipart/form-data")] > 0, bodies
    assert statuses[("POST /v1/predict/batch", 200)] > 0, statuses
