"""What an unauthenticated caller can see in production, the docs setting, the pages
served without a CDN, and a spec that says what the API really answers."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import Settings
from serving.store import ModelStore
from tests.serving.conftest import KEY

DOCS = ("/docs", "/redoc", "/openapi.json")


def app_for(store: ModelStore, **overrides: Any) -> TestClient:
    settings = Settings(**{"api_key": KEY, "environment": "production",
                           "load_models_on_startup": False, **overrides})
    return TestClient(create_app(settings, store))


def test_docs_are_closed_by_default_in_production_even_with_the_key(store) -> None:
    client = app_for(store)
    for path in DOCS:
        assert client.get(path).status_code == 404, path
        assert client.get(path, headers={"X-API-Key": KEY}).status_code == 404, path
    assert client.app.openapi()["paths"]  # still built, for tests and tools in-process


@pytest.mark.parametrize(("environment", "expose", "open_"), [
    ("development", None, True), ("production", True, True), ("development", False, False)])
def test_docs_exposure_is_a_setting(store, environment, expose, open_) -> None:
    key = KEY if environment == "production" else "dev-key"
    client = app_for(store, environment=environment, expose_docs=expose, api_key=key)
    assert all((client.get(p).status_code == 200) is open_ for p in DOCS)


def test_the_docs_pages_load_nothing_from_another_host(store) -> None:
    client = app_for(store, expose_docs=True)
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", html), html
        assets = re.findall(r'(?:src|href)="(/docs-assets/[^"]+)"', html)
        assert assets, html
        for asset in assets:
            response = client.get(asset)
            assert response.status_code == 200 and len(response.content) > 1000, asset
    assert "validatorUrl" in client.get("/docs").text  # no badge fetched from a public host


def test_ready_without_the_key_shows_no_internals(store) -> None:
    exposed = ModelStore()
    exposed.snapshot = store.snapshot
    exposed.last_errors = {"payment_delay": "OSError: /home/ops/mlruns/7/model.pkl: denied"}
    client = app_for(exposed)
    anonymous = client.get("/ready")
    assert anonymous.status_code == 200
    assert anonymous.json() == {"status": "ready",
                                "loaded": ["outcome", "payment_delay", "remaining_time"],
                                "missing": []}
    keyed = client.get("/ready", headers={"X-API-Key": KEY}).json()
    assert keyed["errors"] == exposed.last_errors and "passes" in keyed["predict_passes"]
    wrong = client.get("/ready", headers={"X-API-Key": "guess"}).json()
    assert "errors" not in wrong


def test_models_name_the_training_file_without_its_folders(store) -> None:
    client = app_for(store)
    listed = client.get("/v1/models", headers={"X-API-Key": KEY}).json()["models"]
    for model in listed:
        assert model["trained_on"]["path"] == "l2c.csv", model["trained_on"]
        assert "/" not in str(model["trained_on"])


def resolve(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_spec_defines_every_reference_and_declares_the_error_answers(store) -> None:
    spec = app_for(store).app.openapi()
    refs = re.findall(r"\"\$ref\": \"([^\"]+)\"", json.dumps(spec))
    assert "#/components/schemas/BatchRequest" in refs
    for ref in set(refs):
        resolve(spec, ref)  # a KeyError names the undefined schema
    error = spec["components"]["schemas"]["ErrorResponse"]["properties"]["detail"]
    assert {"type": "string"} in error["anyOf"]  # a sentence, or a list of field issues
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if path.startswith("/v1/"):
                declared = set(operation["responses"])
                assert {"400", "401", "413", "422", "503"} <= declared, (method, path)
                assert operation["responses"]["422"]["content"]["application/json"][
                    "schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "503" in spec["paths"]["/ready"]["get"]["responses"]
