"""With any subset of champions every endpoint answers, or says which model it lacks:
never a 500, never a null without a note."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from features.log import export_frame
from serving.app import create_app
from serving.schemas import EXAMPLE_CASE
from serving.settings import Settings
from serving.store import ModelStore, ServedModel, Snapshot
from tests.serving.conftest import KEY

ANSWER = {"outcome": "win_probability", "remaining_time": "remaining_time",
          "payment_delay": "payment_delay"}


def store_with(full: ModelStore, targets: set[str]) -> ModelStore:
    """A store whose registry has champions for ``targets`` only."""

    def loader(target: str) -> ServedModel:
        if target not in targets:
            raise RuntimeError(f"no champion for {target} in /srv/registry/mlflow.db")
        return full.snapshot.models[target]

    partial = ModelStore(loader=loader)
    partial.snapshot = Snapshot(models={t: full.snapshot.models[t] for t in targets})
    return partial


def client_for(store: ModelStore) -> TestClient:
    settings = Settings(api_key=KEY, environment="production", expose_docs=True,
                        load_models_on_startup=False, forecast_simulations=200)
    return TestClient(create_app(settings, store), headers={"X-API-Key": KEY})


def upload(trained) -> dict[str, Any]:
    events = trained.data.log.events
    some = events[events["case_id"].isin(events["case_id"].unique()[:30])]
    csv = export_frame(some, trained.data.log.mapping).to_csv(index=False).encode()
    return {"file": ("log.csv", csv, "text/csv")}


def assert_nulls_are_explained(prediction: dict[str, Any], served: set[str]) -> None:
    for target, key in ANSWER.items():
        if target in served:
            continue
        assert prediction[key] is None
        if prediction["status"] == "open":
            assert f"no {target} model is served: {key} is null" in prediction["notes"]


def test_only_the_outcome_champion_every_endpoint_answers_or_names_what_is_missing(
        store, trained) -> None:
    api = client_for(store_with(store, {"outcome"}))
    anonymous = TestClient(api.app)
    hit: set[tuple[str, str]] = set()

    def call(method: str, path: str, **kwargs: Any) -> Any:
        hit.add((method, path))
        client = anonymous if path in ("/health", "/ready") else api
        response = client.request(method, path, **kwargs)
        assert response.status_code < 500 or response.status_code == 503, response.text
        return response

    assert call("GET", "/health").json() == {"status": "ok"}
    ready = call("GET", "/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "partial", "loaded": ["outcome"],
                            "missing": ["remaining_time", "payment_delay"]}

    single = call("POST", "/v1/predict", json=EXAMPLE_CASE)
    assert single.status_code == 200, single.text
    assert 0 < single.json()["win_probability"] < 1
    assert_nulls_are_explained(single.json(), {"outcome"})

    batch = call("POST", "/v1/predict/batch", json={"cases": [EXAMPLE_CASE]})
    assert batch.status_code == 200, batch.text
    assert_nulls_are_explained(batch.json()["predictions"][0], {"outcome"})
    uploaded = api.post("/v1/predict/batch", files=upload(trained))
    assert uploaded.status_code == 200, uploaded.text
    for prediction in uploaded.json()["predictions"]:
        assert_nulls_are_explained(prediction, {"outcome"})

    for response in (call("GET", "/v1/forecast"),
                     call("POST", "/v1/forecast", files=upload(trained))):
        assert response.status_code == 503, response.text
        assert response.json()["detail"].startswith(
            "the forecast needs the remaining_time model(s), not served now")

    models = call("GET", "/v1/models").json()
    assert [m["target"] for m in models["models"]] == ["outcome"]
    reload = call("POST", "/v1/models/reload").json()
    assert reload["reloaded"] is False and reload["targets"]["outcome"]["loaded"] is True
    assert not reload["targets"]["payment_delay"]["loaded"]
    assert call("GET", "/openapi.json").status_code == 200

    routes = {(method, route.path) for route in api.app.routes if isinstance(route, APIRoute)
              for method in route.methods}
    assert routes - {("GET", "/docs"), ("GET", "/redoc")} <= hit, routes - hit


@pytest.mark.parametrize("served", [set(), {"payment_delay"}, {"remaining_time",
                                                                "payment_delay"}])
def test_other_subsets_score_what_they_can_and_say_the_rest(store, served) -> None:
    api = client_for(store_with(store, served))
    ready = TestClient(api.app).get("/ready")
    single = api.post("/v1/predict", json=EXAMPLE_CASE)
    forecast = api.get("/v1/forecast")
    assert forecast.status_code == 503
    lacking = [t for t in ("outcome", "remaining_time") if t not in served]
    assert " and ".join(lacking) in forecast.json()["detail"]
    if not served:
        assert ready.status_code == 503 and ready.json()["status"] == "not ready"
        assert single.status_code == 503 and "POST /v1/models/reload" in single.json()["detail"]
        return
    assert ready.status_code == 200 and ready.json()["status"] == "partial"
    assert single.status_code == 200, single.text
    assert_nulls_are_explained(single.json(), served)
    assert all(single.json()[ANSWER[t]] is not None for t in served)
