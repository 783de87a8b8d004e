"""A model trained below the thin-data minimum, or a shipped baseline, is said to be one
wherever its numbers are shown (issue 19): the predictions' notes, the forecast's
assumptions, the cockpit's pipeline, deals, deal and models pages; and a baseline's
explanation lists no factor it does not have.

The served models here come from a 300-case simulated log in a store of this module's
own, promoted by force: every target is then below its minimum, and each ships a
baseline (what a new user with a small export meets first)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from features.io import write_frame
from features.simulate import simulate_log
from models.registry import configure_mlflow
from serving.app import create_app
from serving.caveats import served_caveats
from serving.pages.fmt import days_late
from serving.settings import Settings
from serving.store import ModelStore, ServedModel, Snapshot

KEY = "caveats-test-key-0123456789"


@pytest.fixture(scope="module")
def thin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, object]]:
    """An app serving the champions trained on a thin log, in a private MLflow store."""
    from training.config import TrainConfig
    from training.promote import promote
    from training.train import train

    home = tmp_path_factory.mktemp("thin-store")
    events, _ = simulate_log(n_cases=300, seed=7)
    path = home / "thin.csv"
    write_frame(events, path, case_column="opportunity_id", activity_column="activity",
                timestamp_column="event_time", resource_column="user")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_REGISTRY_URI", uri)  # MLflow keeps the last one it was given
        patch.chdir(home)
        configure_mlflow()
        outcome = train(path, None, "all", TrainConfig(learning_curve=False))
        for target in outcome.versions:
            promote(target, outcome.run_id, force=True)
        store = ModelStore()
        report = store.reload()
        assert all(r["loaded"] for r in report.values()), report
        settings = Settings(api_key=KEY, environment="development",
                            load_models_on_startup=False, forecast_simulations=200,
                            watch_champions_seconds=0)
        with TestClient(create_app(settings, store), headers={"X-API-Key": KEY}) as client:
            yield client, outcome
    configure_mlflow()  # back to the session's store for the tests after this module


def _results(outcome) -> dict[str, object]:
    return {r.target.name: r for r in outcome.results}


def test_the_thin_log_trains_low_data_baselines(thin) -> None:
    _, outcome = thin
    results = _results(outcome)
    assert set(results) == {"outcome", "remaining_time", "payment_delay"}
    assert all(r.low_data for r in results.values())
    assert results["outcome"].bundle.info["kind_is_baseline"]


def _open_case(client: TestClient) -> str:
    page = client.get("/deals")
    assert page.status_code == 200, page.text[:300]
    return re.search(r'data-case="([^"]+)"', page.text).group(1)


def test_each_prediction_says_low_data_and_a_baseline_lists_no_factor(thin) -> None:
    client, outcome = thin
    case = _open_case(client)
    answer = client.post("/v1/predict", json=_case_request(client, case))
    assert answer.status_code == 200, answer.text[:500]
    prediction = answer.json()
    for target, explanation in prediction["explanations"].items():
        # a term of exactly zero moves nothing: never worded "raises the win chance"
        assert all(c["contribution"] != 0.0 for c in explanation["contributions"]), target
    notes = " ".join(prediction["notes"])
    for target in ("outcome", "remaining_time", "payment_delay"):
        if prediction[{"outcome": "win_probability"}.get(target, target)] is not None:
            assert f"low data: the {target} model" in notes, notes
    results = _results(outcome)
    if results["outcome"].kind == "base_rate":  # a constant: no factor at all
        assert prediction["explanations"]["outcome"]["contributions"] == []
    assert "a baseline" in prediction["explanations"]["outcome"]["space"]


def _case_request(client: TestClient, case: str) -> dict:
    """The deal as the deal page sends it to the predict service."""
    from serving.pages import data

    snapshot = client.app.state.store.snapshot
    return data.deal_request(snapshot, case).model_dump(mode="json")


def test_the_forecast_names_its_low_data_baseline_models(thin) -> None:
    client, _ = thin
    answer = client.get("/v1/forecast", params={"simulations": 200})
    assert answer.status_code == 200, answer.text[:500]
    said = " ".join(answer.json()["assumptions"])
    assert "The win probability (model version" in said and "low data" in said
    assert "overall win rate, a baseline" in said or "win rate of the stage, a baseline" in said


@pytest.mark.parametrize("path", ["/", "/deals", "deal"])
def test_pages_with_the_models_numbers_flag_low_data_and_baselines(thin, path) -> None:
    client, _ = thin
    if path == "deal":
        path = f"/deals/{_open_case(client)}"
    page = client.get(path)
    assert page.status_code == 200, page.text[:500]
    caveats = re.search(r'<div class="caveats" id="model-caveats".*?</div>', page.text, re.S)
    assert caveats, f"{path} shows the models' numbers without their caveats"
    shown = caveats.group(0)
    # the pipeline shows the win probability and the expected end, not the payment delay
    assert shown.count(">low data</span>") == (2 if path == "/" else 3)
    assert "labelled training case" in shown
    assert "a baseline: no learnt model beat it" in shown and ">baseline</span>" in shown


def test_models_page_shows_what_each_version_ships_and_its_low_data_flag(thin) -> None:
    client, outcome = thin
    page = client.get("/models")
    assert page.status_code == 200
    results = _results(outcome)
    for target, result in results.items():
        section = re.search(rf'<section class="target" id="target-{target}">.*?</section>',
                            page.text, re.S).group(0)
        row = re.search(r'<tr class="champion".*?</tr>', section, re.S).group(0)
        label = result.bundle.info["kind_label"].replace("'", "&#39;")
        assert label in row and ">baseline</span>" in row, target
        assert ">low data</span>" in row and "labelled training case" in row, target
        assert "Shipped: " in row  # the reason it was shipped
        assert re.search(r"\d\d [A-Z][a-z]{2} \d{4}", row), "the version is dated"
        assert not re.search(r"_event: \d{4}-\d\d-\d\dT", row), "dates as dates"
    regression = re.search(r'id="target-remaining_time">.*?</thead>', page.text, re.S)
    assert "coverage_80" in regression.group(0)  # the interval's coverage is shown
    heads = re.search(r'id="target-outcome">.*?</thead>', page.text, re.S).group(0)
    assert ">jump p50</th>" in heads and ">jump p90</th>" in heads  # the score's stability


def test_a_model_with_enough_data_that_beat_its_baselines_has_no_caveat() -> None:
    def served(target: str, **info: object) -> ServedModel:
        return ServedModel(target, 4, "r" * 32, SimpleNamespace(info=info))

    snapshot = Snapshot(models={
        "outcome": served("outcome", kind="lightgbm", kind_is_baseline=False, low_data=None),
        "remaining_time": served("remaining_time", kind="median_by_last_activity",
                                 kind_label="median by last activity",
                                 kind_is_baseline=True, low_data=None),
        "payment_delay": served("payment_delay"),  # trained before issue 19: no tags
    })
    [caveat] = served_caveats(snapshot)
    assert caveat.target == "remaining_time" and caveat.low_data is None
    assert caveat.text == ("The expected end (model version 4): it is the median by last "
                           "activity, a baseline: no learnt model beat it on this history.")


def test_payment_delay_in_words() -> None:
    assert days_late(-15.4) == "15 days early" and days_late(3.2) == "3 days late"
    assert days_late(0.3) == "on the due date" and days_late(1) == "1 day late"
    assert days_late(None) == "–"


def test_deal_page_says_early_not_minus_days_late(thin) -> None:
    client, _ = thin
    page = client.get(f"/deals/{_open_case(client)}")
    assert not re.search(r"-\d+ days? late", page.text)
    assert "delay after the due date -" not in page.text



def test_promoting_from_the_models_page_says_low_data_and_where_force_is(thin) -> None:
    client, outcome = thin
    version = outcome.versions["remaining_time"]  # its baseline passes the honesty gate
    answer = client.post("/models/promote", data={"target": "remaining_time",
                                                  "version": str(version)})
    assert answer.status_code == 200
    shown = re.search(r'id="promote-message">(.*?)</p>', answer.text, re.S).group(1)
    assert "is now the champion" in shown and "low data" in shown
    # the thin win model's test AUC is below its stage rate's: refused, and a page has no
    # --force of its own to offer
    from training.promote import honesty_problems

    win = _results(outcome)["outcome"]
    assert honesty_problems(win.bundle), "the thin log's win model should fail the gate"
    refused = client.post("/models/promote", data={"target": "outcome",
                                                   "version": str(outcome.versions["outcome"])})
    said = re.search(r'id="promote-refused">(.*?)</p>', refused.text, re.S).group(1)
    assert "`l2c promote --force` can promote anyway" in said and "use --force" not in said
