"""The model store when the registry is damaged: a worker restarted while the champion
is corrupt serves the newest earlier version that works, or names what it cannot serve."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient

from models.registry import CHAMPION, ModelUnusableError
from serving.app import create_app
from serving.settings import Settings
from serving.store import (
    ChampionLoadError,
    ModelsNotLoadedError,
    ModelStore,
    ServedModel,
    load_fallback,
)
from tests.models.registry_faults import champion_of, copy_of_version, forget
from tests.serving.conftest import KEY
from tests.serving.test_api import case_request, open_test_case

NAME = "l2c-outcome"



def outcome_fails_to_load(served: dict[str, ServedModel],
                          version: int) -> Callable[[str], ServedModel]:
    """A loader whose outcome champion (``version``) cannot be loaded; the other targets
    load as ``served``."""
    def loader(target: str) -> ServedModel:
        if target == "outcome":
            raise ChampionLoadError(
                f"champion l2c-outcome version {version} cannot be loaded", version)
        return served[target]

    return loader

def test_restart_with_a_corrupt_champion_serves_the_last_working_version(
        trained, store: ModelStore, tmp_path: Path) -> None:
    client = MlflowClient()
    good = champion_of(NAME)
    corrupt = copy_of_version(NAME, good, tmp_path, damage=True)
    client.set_registered_model_alias(NAME, CHAMPION, str(corrupt))  # the damage came later
    try:
        restarted = ModelStore()  # a worker process started afresh (after kill -9)
        report = restarted.reload()
        assert report["outcome"] == {
            "loaded": False, "error": report["outcome"]["error"], "serving_version": good,
            "stand_in": True}
        assert f"version {corrupt} cannot be loaded" in report["outcome"]["error"]
        assert report["remaining_time"]["loaded"] and report["payment_delay"]["loaded"]
        served = restarted.snapshot.models["outcome"]
        assert (served.version, served.stand_in_for) == (good, corrupt)
        assert f"serving version {good} instead" in restarted.last_errors["outcome"]
        assert restarted.ready and restarted.missing == {}
        # the watcher does not try the corrupt champion again and again
        assert restarted.reload_if_promoted() is None

        settings = Settings(api_key=KEY, load_models_on_startup=False)
        with TestClient(create_app(settings, restarted), headers={"X-API-Key": KEY}) as app:
            case_id, k = open_test_case(trained)
            answer = app.post("/v1/predict", json=case_request(trained.data.split.test,
                                                                case_id, k))
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["win_probability"] is not None
            assert body["model_versions"]["outcome"] == good
            listed = app.get("/v1/models").json()
            assert f"serving version {good} instead" in listed["load_errors"]["outcome"]
    finally:
        client.set_registered_model_alias(NAME, CHAMPION, str(good))
        forget(NAME, corrupt)


def test_no_working_version_leaves_the_target_missing_with_the_reason(store) -> None:
    """Nothing to fall back on: the store is not ready and says which target and why;
    a request that needs the target gets ModelsNotLoadedError (503), never a null."""
    served = store.snapshot.models
    loader = outcome_fails_to_load(served, 7)

    def fallback(target: str, failed: int) -> ServedModel:
        raise ModelUnusableError(f"no earlier version of {target} before {failed} loads")

    cold = ModelStore(loader=loader, fallback=fallback)
    report = cold.reload()
    assert report["outcome"]["serving_version"] is None and not report["outcome"]["loaded"]
    assert not cold.ready
    assert set(cold.missing) == {"outcome"}
    assert "version 7 cannot be loaded" in cold.missing["outcome"]
    assert "no earlier version of outcome before 7" in cold.missing["outcome"]
    with pytest.raises(ModelsNotLoadedError,
                       match=r"outcome: ChampionLoadError: champion l2c-outcome version 7"):
        cold.snapshot.require_working()
    assert cold.snapshot.broken == {"outcome"}
    with pytest.raises(ModelsNotLoadedError, match=r"version 7 cannot be loaded"):
        cold.snapshot.get("outcome")
    assert cold.snapshot.get("remaining_time") is served["remaining_time"]
    # a store that never loaded anything is not ready either
    assert not ModelStore().ready and set(ModelStore().missing) == {
        "outcome", "remaining_time", "payment_delay"}


def test_a_failed_hot_reload_keeps_the_model_it_served(store) -> None:
    served = store.snapshot.models
    loader = outcome_fails_to_load(served, 9)

    def no_fallback_expected(target: str, failed: int) -> ServedModel:
        raise AssertionError("a worker that serves a model keeps it; no fallback needed")

    warm = ModelStore(loader=loader, fallback=no_fallback_expected)
    warm.snapshot = store.snapshot
    report = warm.reload()
    assert report["outcome"]["serving_version"] == served["outcome"].version
    assert warm.snapshot.models["outcome"] is served["outcome"] and warm.ready
    assert "still serving version" in warm.last_errors["outcome"]


def test_fallback_skips_unusable_earlier_versions_and_says_why(trained, store,
                                                               tmp_path: Path) -> None:
    good = champion_of(NAME)
    client = MlflowClient()
    experiment = client.get_run(trained.run_id).info.experiment_id
    killed = client.create_run(experiment).info.run_id  # left RUNNING, as by kill -9
    damaged = copy_of_version(NAME, good, tmp_path / "a", damage=True)
    unfinished = copy_of_version(NAME, good, tmp_path / "b", run_id=killed)
    try:
        stand_in = load_fallback("outcome", unfinished + 1)
        assert stand_in.version == good and stand_in.stand_in_for == unfinished + 1
        with pytest.raises(ModelUnusableError) as caught:
            load_fallback("outcome", good)  # nothing before the first good version works
        assert "stand in" in str(caught.value)
        with pytest.raises(ModelUnusableError, match="there is none"):
            load_fallback("outcome", 1)
    finally:
        forget(NAME, damaged, unfinished)
        client.delete_run(killed)


def test_an_unreadable_registry_fails_every_load_but_keeps_serving(store, monkeypatch) -> None:
    def broken() -> str:
        raise OSError("disk I/O error: mlflow.db")

    monkeypatch.setattr("serving.store.configure_mlflow", broken)
    warm = ModelStore()
    warm.snapshot = store.snapshot
    report = warm.reload()  # POST /v1/models/reload must not turn this into a 500
    assert not any(r["loaded"] for r in report.values())
    assert warm.snapshot.models == store.snapshot.models and warm.ready
    assert "the model registry cannot be opened (OSError: disk I/O error" in \
        warm.last_errors["outcome"]


def test_a_missing_target_makes_the_api_answer_503_with_the_reason(trained, store) -> None:
    served = store.snapshot.models
    loader = outcome_fails_to_load(served, 7)

    def fallback(target: str, failed: int) -> ServedModel:
        raise ModelUnusableError("no earlier version of l2c-outcome can stand in")

    cold = ModelStore(loader=loader, fallback=fallback)
    cold.reload()
    settings = Settings(api_key=KEY, load_models_on_startup=False)
    with TestClient(create_app(settings, cold), headers={"X-API-Key": KEY}) as app:
        ready = app.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["broken"] == ["outcome"] and ready.json()["status"] == "not ready"
        assert "version 7 cannot be loaded" in ready.json()["errors"]["outcome"]
        case_id, k = open_test_case(trained)
        answer = app.post("/v1/predict", json=case_request(trained.data.split.test, case_id, k))
        assert answer.status_code == 503
        assert "outcome: ChampionLoadError" in answer.json()["detail"]
