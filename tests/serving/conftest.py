"""An app serving the session's trained champions, driven through TestClient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import Settings
from serving.store import ModelStore

KEY = "test-key-0123456789"


@pytest.fixture(scope="session")
def store(trained) -> ModelStore:
    loaded = ModelStore()
    report = loaded.reload()
    assert all(r["loaded"] for r in report.values()), report
    return loaded


@pytest.fixture()
def client(store: ModelStore) -> Iterator[TestClient]:
    settings = Settings(api_key=KEY, environment="production", load_models_on_startup=False,
                        max_request_bytes=30_000_000, forecast_simulations=300)
    with TestClient(create_app(settings, store), headers={"X-API-Key": KEY}) as test_client:
        yield test_client
