"""The API: predictions equal the training pipeline's, explanations add up, bad input is 4xx."""

from __future__ import annotations

import dataclasses
import io
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from serving.app import create_app
from serving.schemas import EXAMPLE_CASE, BatchResponse, Prediction
from serving.settings import Settings
from serving.store import ModelStore, ServedModel
from tests.serving.conftest import KEY

CASE_ATTRS = ["value", "currency", "rep", "region", "account", "lead_source", "product",
              "contract_type", "payment_terms"]


def case_request(events: pd.DataFrame, case_id: str, k: int | None = None) -> dict[str, Any]:
    """A /v1/predict body from canonical events of one case (its first k events)."""
    rows = events[events["case_id"] == case_id].sort_values("timestamp", kind="stable")
    rows = rows.head(k) if k else rows
    first = rows.iloc[0]
    attributes = {c: (None if pd.isna(first[c]) else first[c]) for c in CASE_ATTRS}
    attributes["value"] = float(first["value"])
    return {
        "case_id": case_id, "attributes": attributes, "explain": True, "top_k": 4,
        "events": [{"activity": r.activity, "timestamp": r.timestamp.isoformat(),
                    "resource": None if pd.isna(r.resource) else r.resource,
                    "attributes": {"stage": r.stage,
                                   "discount_pct": None if pd.isna(r.discount_pct)
                                   else float(r.discount_pct)}}
                   for r in rows.itertuples()],
    }


def open_test_case(trained) -> tuple[str, int]:
    """A test case still undecided after k events, k >= 3."""
    frame, labels = trained.data.test_frame, trained.data.test_labels
    usable = frame[labels["outcome_usable"].to_numpy() & (frame["prefix_len"] >= 3).to_numpy()]
    row = usable.iloc[len(usable) // 2]
    return row["case_id"], int(row["prefix_len"])


def test_prediction_equals_the_training_pipeline_for_the_same_prefix(client, trained) -> None:
    case_id, k = open_test_case(trained)
    response = client.post("/v1/predict", json=case_request(trained.data.log.events, case_id, k))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "open" and body["events_used"] == k
    frame = trained.data.test_frame
    row = frame[(frame["case_id"] == case_id) & (frame["prefix_len"] == k)]
    for result in trained.results:
        expected = result.bundle.predict_features(row).iloc[0]
        if result.target.name == "outcome":
            assert body["win_probability"] == pytest.approx(expected["p_win"], abs=1e-9)
        elif result.target.name == "remaining_time":
            assert body["remaining_time"]["days"] == pytest.approx(
                max(expected["prediction_days"], 0), abs=1e-6)
        else:
            assert body["payment_delay"]["days"] == pytest.approx(
                expected["prediction_days"], abs=1e-6)


def test_shap_contributions_add_up_to_the_model_output(client, trained) -> None:
    case_id, k = open_test_case(trained)
    body = client.post("/v1/predict",
                       json=case_request(trained.data.log.events, case_id, k)).json()
    for _target, explanation in body["explanations"].items():
        listed = sum(c["contribution"] for c in explanation["contributions"])
        assert explanation["base_value"] + listed + explanation["other_features"] == \
            pytest.approx(explanation["total"], abs=1e-6)
        assert len(explanation["contributions"]) == 4
        assert all(" — " in c["text"] for c in explanation["contributions"])
    assert body["explanations"]["remaining_time"]["total"] == pytest.approx(
        body["remaining_time"]["days"], abs=1e-6)
    assert body["explanations"]["payment_delay"]["total"] == pytest.approx(
        body["payment_delay"]["days"], abs=1e-6)
    outcome = body["explanations"]["outcome"]
    assert "log-odds" in outcome["space"]
    served = next(r for r in trained.results if r.target.name == "outcome").bundle
    frame = trained.data.test_frame
    row = frame[(frame["case_id"] == case_id) & (frame["prefix_len"] == k)]
    raw = served.model.raw_proba(served.pipeline.feature_matrix(row))[0]
    assert outcome["total"] == pytest.approx(np.log(raw / (1 - raw)), abs=1e-6)


def test_grouped_features_are_explained_as_one_item_that_still_adds_up(store) -> None:
    from models.explain import explain_rows

    bundle = store.snapshot.get("outcome").bundle
    features = bundle.pipeline.encode(bundle.info["example_events"], last_only=True)
    explained = explain_rows(bundle, features, top_k=len(features.names))
    raw = bundle.raw_output(features.matrix())
    for row, explanation in enumerate(explained):
        features = [c["feature"] for c in explanation["contributions"]]
        assert "discount_pct" in features and "quarter_position" in features
        assert not {"discount_pct_min", "day_in_quarter"} & set(features)
        assert explanation["other_features"] == pytest.approx(0.0, abs=1e-9)
        listed = sum(c["contribution"] for c in explanation["contributions"])
        assert explanation["base_value"] + listed == pytest.approx(raw[row], abs=1e-6)
        discount = features.index("discount_pct")
        assert explanation["contributions"][discount]["value"].startswith("now ")
        assert ", min " in explanation["contributions"][discount]["value"]


def test_api_key_is_required_except_for_health(client, store) -> None:
    anonymous = TestClient(client.app)
    assert anonymous.get("/health").status_code == 200
    assert anonymous.get("/ready").json()["status"] == "ready"
    denied = anonymous.post("/v1/predict", json=EXAMPLE_CASE)
    assert denied.status_code == 401 and "X-API-Key" in denied.json()["detail"]
    wrong = anonymous.get("/v1/models", headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401


def test_placeholder_key_is_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(environment="production", api_key="change-me")
    assert Settings(environment="development").api_key.get_secret_value() == "dev-key"


def test_validation_errors_name_the_field(client) -> None:
    no_events = client.post("/v1/predict", json={"case_id": "X", "events": []})
    assert no_events.status_code == 422
    assert no_events.json()["detail"][0]["loc"][-1] == "events"
    bad_time = dict(EXAMPLE_CASE, events=[{"activity": "Lead Captured", "timestamp": "soon"}])
    response = client.post("/v1/predict", json=bad_time)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "timestamp"
    not_json = client.post("/v1/predict/batch", content=b"{oops",
                           headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and "not valid JSON" in not_json.json()["detail"]
    blank_id = client.post("/v1/predict", json=dict(EXAMPLE_CASE, case_id="   "))
    assert blank_id.status_code == 422 and blank_id.json()["detail"][0]["loc"][-1] == "case_id"
    twice = client.post("/v1/predict/batch", json={"cases": [EXAMPLE_CASE, EXAMPLE_CASE]})
    assert twice.status_code == 422 and "more than once" in twice.text


def test_times_past_year_9999_in_utc_are_quarantined_not_a_500(client) -> None:
    late = dict(EXAMPLE_CASE, events=[*EXAMPLE_CASE["events"], {
        "activity": "Quote Issued", "timestamp": "9999-12-31T23:00:00-05:00"}])
    response = client.post("/v1/predict", json=late)
    assert response.status_code == 200, response.text
    assert any(note.startswith("event 5 ignored") for note in response.json()["notes"])


def test_an_event_sent_twice_is_counted_once_and_said_so(client) -> None:
    twice = dict(EXAMPLE_CASE, events=[*EXAMPLE_CASE["events"], EXAMPLE_CASE["events"][1]])
    body = client.post("/v1/predict", json=twice).json()
    once = client.post("/v1/predict", json=EXAMPLE_CASE).json()
    assert body["events_used"] == once["events_used"] == len(EXAMPLE_CASE["events"])
    assert body["win_probability"] == once["win_probability"]
    assert any(f"event {len(twice['events'])} ignored: duplicate_event" in note
               for note in body["notes"]), body["notes"]


def test_odd_input_is_handled_and_reported(client) -> None:
    request = {**EXAMPLE_CASE, "attributes": {**EXAMPLE_CASE["attributes"],
                                              "rep": "Rep 999", "favourite_colour": "blue"}}
    request["attributes"].pop("region")
    request["events"] = [*EXAMPLE_CASE["events"][::-1],
                         {"activity": "Coffee With Client", "timestamp": "2024-09-21T10:00:00Z"}]
    response = client.post("/v1/predict", json=request)
    assert response.status_code == 200, response.text
    notes = " | ".join(response.json()["notes"])
    assert "not in time order" in notes
    assert "rep 'Rep 999' is unknown" in notes
    assert "favourite_colour" in notes
    assert "'Coffee With Client' is unknown" in notes
    assert "region" in notes


def test_decided_cases_say_so(client) -> None:
    won = {**EXAMPLE_CASE, "events": [*EXAMPLE_CASE["events"], {
        "activity": "Opportunity Won", "timestamp": "2024-10-01T10:00:00Z"}]}
    body = client.post("/v1/predict", json=won).json()
    assert body["status"] == "won" and body["win_probability"] is None
    assert body["payment_delay"] is not None and "already won" in " ".join(body["notes"])
    lost = {**EXAMPLE_CASE, "events": [*EXAMPLE_CASE["events"], {
        "activity": "Opportunity Lost", "timestamp": "2024-10-01T10:00:00Z"}]}
    body = client.post("/v1/predict", json=lost).json()
    assert body["status"] == "lost" and body["remaining_time"] is None
    assert "already lost" in " ".join(body["notes"])


def test_batch_json_and_uploaded_csv_agree(client, trained) -> None:
    events = trained.data.split.test
    cases = events["case_id"].unique()[:25]
    json_body = {"cases": [case_request(events, c) for c in cases], "explain": True}
    for case in json_body["cases"]:
        case.pop("explain"), case.pop("top_k")
    by_json = client.post("/v1/predict/batch", json=json_body)
    assert by_json.status_code == 200, by_json.text
    from features.log import export_frame

    csv = export_frame(events[events["case_id"].isin(cases)], trained.data.log.mapping)
    upload = client.post("/v1/predict/batch", files={
        "file": ("open.csv", csv.to_csv(index=False).encode(), "text/csv")})
    assert upload.status_code == 200, upload.text
    for answer in (by_json.json(), upload.json()):  # written without the response model
        BatchResponse.model_validate(answer)
        assert all(set(p) == set(Prediction.model_fields) for p in answer["predictions"])
    a = {p["case_id"]: p for p in by_json.json()["predictions"]}
    b = {p["case_id"]: p for p in upload.json()["predictions"]}
    assert set(a) == set(b) == set(cases)
    for case in cases:
        assert a[case]["status"] == b[case]["status"]
        if a[case]["remaining_time"] is not None:
            assert a[case]["remaining_time"]["days"] == pytest.approx(
                b[case]["remaining_time"]["days"], abs=1e-6)
    bad = client.post("/v1/predict/batch", files={"file": ("x.txt.zip", b"PK", "x")})
    assert bad.status_code == 422 and "extension" in bad.json()["detail"]


def test_forecast_of_the_trained_log_and_of_an_upload(client, trained) -> None:
    response = client.get("/v1/forecast", params={"group_by": "region", "months": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["open_cases"] > 0 and len(body["months"]) == 4
    total = body["total_bookings"]
    assert total["p10"] <= total["p50"] <= total["p90"]
    assert sum(g["open_cases"] for g in body["groups"]) == body["open_cases"]
    assert body["movers"][0]["bookings_sd"] >= body["movers"][-1]["bookings_sd"]
    from features.log import export_frame

    csv = export_frame(trained.data.log.events, trained.data.log.mapping)
    upload = client.post("/v1/forecast", files={
        "file": ("log.csv", csv.to_csv(index=False).encode(), "text/csv")})
    assert upload.status_code == 200, upload.text
    assert upload.json()["open_cases"] == body["open_cases"]
    assert client.get("/v1/forecast", params={"group_by": "colour"}).status_code == 422


def test_forecast_counts_won_unpaid_deals_as_cash_only_and_reports_missing_values(
        client, trained) -> None:
    from features.log import export_frame
    from features.outcomes import WON, case_outcomes

    log = trained.data.log
    events, roles = log.events, log.mapping.roles
    outcomes = case_outcomes(events, roles)
    paid = events.loc[events["activity"].isin(roles.payment), "case_id"].unique()
    won_unpaid = outcomes.index[(outcomes == WON) & ~outcomes.index.isin(paid)][:1]
    open_case = outcomes.index[outcomes == "open"][:1]
    assert len(won_unpaid) == 1 and len(open_case) == 1
    chosen = events[events["case_id"].isin([*won_unpaid, *open_case])].copy()
    chosen.loc[chosen["case_id"] == open_case[0], "value"] = np.nan
    value = float(chosen.loc[chosen["case_id"] == won_unpaid[0], "value"].dropna().iloc[-1])
    csv = export_frame(chosen, log.mapping).to_csv(index=False).encode()
    response = client.post("/v1/forecast", params={"months": 24},
                           files={"file": ("two.csv", csv, "text/csv")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["open_cases"], body["won_unpaid_cases"], body["deals_without_value"]) == (1, 1, 1)
    assert body["total_bookings"]["expected"] == 0.0  # booked already; the open one has no value
    assert body["total_cash_in"]["p10"] == pytest.approx(value)  # pays for certain
    assert any(str(open_case[0]) in a and "no value" in a for a in body["assumptions"])


def test_won_deals_count_as_cash_only_with_a_payment_role_and_while_fresh(trained) -> None:
    from features.log import EventLog
    from features.outcomes import WON, case_outcomes, first_time_of
    from serving.forecast import win_to_payment_lags, won_awaiting_payment

    log = trained.data.log
    events, roles = log.events, log.mapping.roles
    status = case_outcomes(events, roles)
    paid = events.loc[events["activity"].isin(roles.payment), "case_id"].unique()
    status = status.where(~status.index.isin(paid), "closed")
    # an old win never paid: shift one won-unpaid case three years back
    unpaid_won = status.index[status == WON]
    stale_case = unpaid_won[0]
    shifted = events.copy()
    shifted.loc[shifted["case_id"] == stale_case, "timestamp"] -= pd.Timedelta(days=3 * 365)
    stale_log = EventLog(events=shifted, quarantine=log.quarantine, report=log.report,
                         mapping=log.mapping)
    lags = win_to_payment_lags(stale_log)
    assert len(lags) >= 20
    chosen, notes = won_awaiting_payment(stale_log, status, lags)
    assert stale_case not in chosen and len(chosen) > 0
    won_at = first_time_of(shifted, roles.won).reindex(chosen)
    age = (shifted["timestamp"].max() - won_at) / pd.Timedelta(days=1)
    assert (age <= lags.quantile(0.95)).all()
    assert notes and "not forecast as cash" in notes[0]
    no_payment = log.mapping.model_copy(update={
        "roles": roles.model_copy(update={"payment": []})})
    none, why = won_awaiting_payment(
        EventLog(events=events, quarantine=log.quarantine, report=log.report,
                 mapping=no_payment), status, lags)
    assert len(none) == 0 and "no payment activity" in why[0]


def test_models_list_and_failed_reload_keeps_serving(client, store) -> None:
    listed = client.get("/v1/models").json()
    assert {m["target"] for m in listed["models"]} == {"outcome", "remaining_time",
                                                       "payment_delay"}
    assert all("auc" in m["test_metrics"] or "mae_days" in m["test_metrics"]
               for m in listed["models"])
    for m in listed["models"]:  # what was shipped and why (models.selection)
        assert m["kind"] in {"lightgbm", "logistic", "stage_rate", "base_rate",
                             "median_by_last_activity", "account_terms_mean"}
        assert m["kind_reason"] and m["is_baseline"] == (m["kind"] not in ("lightgbm",
                                                                           "logistic"))

    def flaky(target: str) -> ServedModel:
        if target == "outcome":
            raise RuntimeError("artifact store unreachable")
        return store.snapshot.models[target]

    fragile = ModelStore(loader=flaky)
    fragile.snapshot = store.snapshot
    report = fragile.reload()
    assert report["outcome"] == {"loaded": False, "error": "RuntimeError: artifact store "
                                 "unreachable", "serving_version": store.snapshot.models[
                                     "outcome"].version}
    assert fragile.snapshot.models["outcome"] is store.snapshot.models["outcome"]


def test_workers_switch_to_a_newly_promoted_champion_by_themselves(store) -> None:
    """Each worker process asks the registry now and then: a promotion (or a reload that
    reached another worker) brings every worker to the new champion; a version that
    fails to load keeps the old one serving and is not retried over and over."""
    served = store.snapshot.models
    registry = {t: m.version for t, m in served.items()}
    loads: list[str] = []

    def loader(target: str) -> ServedModel:
        loads.append(target)
        if registry[target] == 99:
            raise RuntimeError("cannot load version 99")
        return dataclasses.replace(served[target], version=registry[target])

    watched = ModelStore(loader=loader, versions=lambda: dict(registry))
    watched.snapshot = store.snapshot
    assert watched.reload_if_promoted() is None and loads == []  # nothing promoted
    registry["outcome"] += 1
    settings = Settings(api_key=KEY, load_models_on_startup=False,
                        watch_champions_seconds=0.05)
    with TestClient(create_app(settings, watched), headers={"X-API-Key": KEY}) as app:
        deadline = time.monotonic() + 10
        while watched.snapshot.models["outcome"].version != registry["outcome"]:
            assert time.monotonic() < deadline, "the new champion was not picked up"
            time.sleep(0.05)
        listed = {m["target"]: m["version"] for m in app.get("/v1/models").json()["models"]}
    assert listed["outcome"] == registry["outcome"]
    registry["outcome"] = 99  # a champion that cannot load
    report = watched.reload_if_promoted()
    assert report is not None and not report["outcome"]["loaded"]
    assert watched.snapshot.models["outcome"].version == served["outcome"].version + 1
    before = len(loads)
    assert watched.reload_if_promoted() is None and len(loads) == before  # not retried


def test_reload_under_load_drops_no_request(client) -> None:
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            statuses.append(client.post("/v1/predict", json=EXAMPLE_CASE).status_code)

    workers = [threading.Thread(target=hammer) for _ in range(3)]
    for w in workers:
        w.start()
    reloads = [client.post("/v1/models/reload").json() for _ in range(2)]
    stop.set()
    for w in workers:
        w.join()
    assert all(r["reloaded"] for r in reloads)
    assert len(statuses) > 5 and set(statuses) == {200}


def test_oversized_bodies_are_refused(store) -> None:
    settings = Settings(api_key=KEY, environment="production", load_models_on_startup=False,
                        max_request_bytes=500)
    small = TestClient(create_app(settings, store), headers={"X-API-Key": KEY})
    response = small.post("/v1/predict", json=EXAMPLE_CASE | {"case_id": "x" * 150})
    assert response.status_code == 413 and "500 bytes" in response.json()["detail"]


def test_docs_example_works_as_it_stands(client) -> None:
    schema = client.app.openapi()  # the client is a production app: /openapi.json is closed
    example = schema["components"]["schemas"]["PredictRequest"]["examples"][0]
    response = client.post("/v1/predict", json=example)
    assert response.status_code == 200 and 0 < response.json()["win_probability"] < 1
    buf = io.StringIO()
    buf.write("ok")
