"""Schema-driven fuzzing of the API (schemathesis): no request the OpenAPI spec allows
may get a server error.

Bounded: a fixed number of generated requests per operation (derandomised, so a run is
repeatable) and no deadline per example, as a forecast simulates; about 30 s.
Driven through schemathesis' Python API with Hypothesis' ``@given`` rather than its pytest
plugin, whose fixture loader does not work with pytest 9.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from serving.app import create_app
from serving.settings import Settings
from serving.store import ModelStore
from tests.serving.conftest import KEY

EXAMPLES_PER_OPERATION = 25


def test_no_generated_request_gets_a_server_error(store: ModelStore) -> None:
    app_settings = Settings(api_key=KEY, environment="production",
                            load_models_on_startup=False, forecast_simulations=100)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(app_settings, store))
    # reload takes no input and reloads from MLflow (~1 s); test_api covers it
    operations = [result.ok() for result in schema.get_all_operations()
                  if not result.ok().path.endswith("/reload")]
    fuzzed = [f"{op.method.upper()} {op.path}" for op in operations]
    assert {"POST /v1/predict", "POST /v1/predict/batch", "GET /v1/forecast"} <= set(fuzzed)
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                  database=None, suppress_health_check=list(HealthCheck))
        def request_gets_no_server_error(case: schemathesis.Case) -> None:
            response = case.call(headers={"X-API-Key": KEY})
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: "
                                f"{response.status_code} {response.text[:300]} "
                                f"for body {str(case.body)[:300]}")

        request_gets_no_server_error()
    assert not failures, "\n".join(failures)
