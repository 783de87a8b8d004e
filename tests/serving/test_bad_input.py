"""Bad input never crashes the API: every broken body, file and number gets a 4xx that
says what is wrong (or a note beside the prediction), never a 500 or a silent null."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.log import export_frame
from serving.app import create_app
from serving.schemas import EXAMPLE_CASE
from serving.settings import Settings
from serving.store import ModelStore, Snapshot
from tests.serving.conftest import KEY

JSON = {"content-type": "application/json"}


def make_client(store: ModelStore, **overrides: Any) -> TestClient:
    settings = Settings(**{"api_key": KEY, "environment": "production",
                           "load_models_on_startup": False, "forecast_simulations": 200,
                           **overrides})
    return TestClient(create_app(settings, store), headers={"X-API-Key": KEY})


@pytest.fixture()
def api(store: ModelStore) -> TestClient:
    return make_client(store)


def csv_of(events: pd.DataFrame, trained) -> bytes:
    return export_frame(events, trained.data.log.mapping).to_csv(index=False).encode()


def open_cases(trained, n: int) -> pd.DataFrame:
    """The events of n cases still open at the end of the training log."""
    from features.outcomes import case_outcomes

    log = trained.data.log
    outcomes = case_outcomes(log.events, log.mapping.roles)
    chosen = outcomes.index[outcomes == "open"][:n]
    assert len(chosen) == n
    return log.events[log.events["case_id"].isin(chosen)].copy()


def with_value(value: Any) -> dict[str, Any]:
    return {**EXAMPLE_CASE, "attributes": {**EXAMPLE_CASE["attributes"], "value": value}}


# --------------------------------------------------------------- unreadable uploads
def not_a_workbook() -> bytes:
    """A real zip, but no spreadsheet inside."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "data", "words"), [
    ("log.xlsx", b"plain text, not a zip", "is not a readable Excel workbook"),
    ("log.xlsx", not_a_workbook(), "cannot be read as an Excel workbook"),
    ("log.parquet", b"PAR1 not really", "cannot be read as Parquet"),
    ("log.xes", b"<log><trace>", "not a readable XES file"),
    ("log.csv", "case,activity\n\u00e9t\u00e9,x\n".encode("latin-1"), "not readable as utf-8"),
])
@pytest.mark.parametrize("route", ["/v1/predict/batch", "/v1/forecast"])
def test_an_unreadable_upload_is_a_422_naming_the_file(api, route, name, data, words) -> None:
    response = api.post(route, files={"file": (name, data, "application/octet-stream")})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"{name}: ") and words in detail


# --------------------------------------------------------------- unreadable bodies
def test_json_nested_100k_deep_is_refused_not_a_recursion_error(api) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    batch = api.post("/v1/predict/batch", content=deep, headers=JSON)
    assert batch.status_code == 422 and "nested too deeply" in batch.json()["detail"]
    single = api.post("/v1/predict", content=deep, headers=JSON)  # FastAPI's own parsing
    assert single.status_code == 400 and isinstance(single.json()["detail"], str)
    inside = b'{"cases": ' + deep + b"}"
    nested = api.post("/v1/predict/batch", content=inside, headers=JSON)
    assert nested.status_code == 422


def test_a_body_that_is_not_utf8_is_refused(api) -> None:
    body = json.dumps({"cases": [EXAMPLE_CASE]}).encode().replace(b"Rep 07", b"Rep \xff7")
    batch = api.post("/v1/predict/batch", content=body, headers=JSON)
    assert batch.status_code == 422
    assert batch.json()["detail"].startswith("body is not UTF-8 text")
    single = api.post("/v1/predict", content=json.dumps(EXAMPLE_CASE).encode().replace(
        b"Rep 07", b"Rep \xff7"), headers=JSON)
    assert single.status_code == 400 and isinstance(single.json()["detail"], str)


def chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    """A body sent without a length (chunked), as a streaming client sends it."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "l2c-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: text/csv\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_a_chunked_body_over_the_limit_is_a_413_on_every_route(store, trained) -> None:
    small = make_client(store, max_request_bytes=20_000)
    big_json = json.dumps(with_value(48000) | {"case_id": "x" * 150}).encode() + b" " * 30_000
    for route in ("/v1/predict", "/v1/predict/batch"):
        response = small.post(route, content=chunks(big_json), headers=JSON)
        assert response.status_code == 413, (route, response.text)
        assert "20000 bytes" in response.json()["detail"]
    body, content_type = multipart("log.csv", csv_of(open_cases(trained, 40), trained))
    assert len(body) > 20_000
    for route in ("/v1/predict/batch", "/v1/forecast"):
        response = small.post(route, content=chunks(body), headers={"content-type": content_type})
        assert response.status_code == 413, (route, response.text)
    # the same bodies under the limit are read as usual
    roomy = make_client(store, max_request_bytes=10_000_000)
    response = roomy.post("/v1/predict/batch", content=chunks(body),
                          headers={"content-type": content_type})
    assert response.status_code == 200, response.text


# --------------------------------------------------------------- numbers
@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN"])
def test_non_finite_json_numbers_are_refused_by_field(api, number) -> None:
    single = json.dumps(with_value(12345)).replace("12345", number)
    response = api.post("/v1/predict", content=single, headers=JSON)
    assert response.status_code == 422, response.text
    [issue] = response.json()["detail"]
    assert issue["loc"] == ["body", "attributes", "value"]
    assert "not a finite number" in issue["msg"]
    batch = api.post("/v1/predict/batch", content='{"cases": [' + single + "]}", headers=JSON)
    assert batch.status_code == 422
    assert batch.json()["detail"][0]["loc"] == ["cases", 0, "attributes", "value"]


@pytest.mark.parametrize("value", ["1e999", "inf", 10**400])
def test_a_number_that_overflows_after_parsing_refuses_its_case_with_a_note(api, value) -> None:
    """The reader quarantines a number that is not finite; a case whose every event
    carries it has nothing left to score: a 422 that says why, once."""
    response = api.post("/v1/predict", json=with_value(value))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith("no usable event in the request: column 'value': not a finite "
                             "number")
    assert detail.count("not a finite number") == 1


def test_a_feature_that_overflows_while_derived_refuses_its_case(api) -> None:
    """Each discount is finite, their mean is not: caught on the model's matrix."""
    events = [dict(e) for e in EXAMPLE_CASE["events"]]
    events[-1]["attributes"] = {"stage": "Proposal", "discount_pct": 1.7e308}
    events.append({"activity": "Quote Issued", "timestamp": "2024-09-21T11:00:00Z",
                   "attributes": {"discount_pct": 1.7e308}})
    body = api.post("/v1/predict/batch", json={"cases": [{**EXAMPLE_CASE, "events": events}],
                                               "explain": True}).json()
    [prediction] = body["predictions"]
    assert prediction["win_probability"] is None and prediction["explanations"] == {}
    assert any(n.startswith("not predicted: discount pct") and "not a finite number" in n
               for n in prediction["notes"]), prediction["notes"]


def test_a_huge_finite_value_is_scored_and_said_to_be_far_outside_training(api) -> None:
    response = api.post("/v1/predict", json=with_value(1e308))
    assert response.status_code == 200, response.text
    body = response.json()
    assert 0 <= body["win_probability"] <= 1
    [note] = [n for n in body["notes"] if "far outside" in n]
    assert note.startswith("value = 1e+308 is far outside what the model was trained on")
    usual = api.post("/v1/predict", json=with_value(48000)).json()
    assert not any("far outside" in n for n in usual["notes"])


def test_an_uploaded_infinite_amount_refuses_that_case_only(api, trained) -> None:
    events = open_cases(trained, 6)
    bad = events["case_id"].unique()[0]
    events.loc[events["case_id"] == bad, "value"] = np.inf
    response = api.post("/v1/predict/batch", files={"file": ("six.csv", csv_of(events, trained),
                                                             "text/csv")})
    assert response.status_code == 200, response.text
    answers = {p["case_id"]: p for p in response.json()["predictions"]}
    assert len(answers) == 5 and bad not in answers  # every row of it quarantined ...
    unscored = response.json()["unscored"]  # ... and said so, not dropped
    assert list(unscored) == [bad]
    assert all("non_finite_number" in n and "not a finite number" in n for n in unscored[bad])
    others = list(answers.values())
    assert all(p["status"] == "open" and p["win_probability"] is not None
               and p["remaining_time"] is not None for p in others)


def test_the_forecast_leaves_out_infinite_amounts_and_refuses_sums_that_overflow(
        api, trained) -> None:
    events = open_cases(trained, 3)
    chosen = events["case_id"].unique()
    events.loc[events["case_id"] == chosen[0], "value"] = np.inf
    response = api.post("/v1/forecast", files={"file": ("three.csv", csv_of(events, trained),
                                                        "text/csv")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["open_cases"] == 2
    assert any("could not be used" in a and "not a finite number" in a
               for a in body["assumptions"]), body["assumptions"]
    events.loc[events["case_id"].isin(chosen), "value"] = 1e308
    overflow = api.post("/v1/forecast", files={"file": ("three.csv", csv_of(events, trained),
                                                        "text/csv")})
    assert overflow.status_code == 422, overflow.text
    assert "too large to add up" in overflow.json()["detail"]


def test_dates_past_what_a_datetime_holds_are_missing_not_an_overflow() -> None:
    from serving.answers import _NAT, _datetimes, _shifted

    start = np.array([0, 0, 0, _NAT], dtype=np.int64)
    shifted = _shifted(start, np.array([1.0, np.inf, 5e6, 1.0]))
    assert shifted.tolist() == [86_400_000_000, _NAT, _NAT, _NAT]
    near_end = np.array([253_402_300_000_000_000], dtype=np.int64)  # ~ year 9999
    assert _datetimes(_shifted(near_end, np.array([400.0]))) == [None]


# --------------------------------------------------------------- typed errors
def test_a_model_that_cannot_encode_accepted_events_is_a_503_that_says_retrain(store) -> None:
    """Chosen by the error's type (ModelMismatchError), not by words in its message."""
    served = store.snapshot.models["outcome"]
    mismatched = copy.copy(served.bundle.pipeline)
    mismatched.extra_columns_ = [*served.bundle.pipeline.extra_columns_, "colour"]
    bundle = dataclasses.replace(served.bundle, pipeline=mismatched)
    odd = ModelStore()
    odd.snapshot = Snapshot(models={"outcome": dataclasses.replace(served, bundle=bundle)})
    response = make_client(odd).post("/v1/predict", json=EXAMPLE_CASE)
    assert response.status_code == 503, response.text
    detail = response.json()["detail"]
    assert "colour" in detail and "retrain" in detail


# --------------------------------------------------------------- rows that cannot be used
def test_uploaded_rows_that_cannot_be_used_are_counted_and_noted_never_dropped_silently(
        api, trained) -> None:
    events = open_cases(trained, 4)
    frame = export_frame(events, trained.data.log.mapping)
    time_column = trained.data.log.mapping.columns["timestamp"]
    time_column = time_column if isinstance(time_column, str) else time_column[0]
    case_column = trained.data.log.mapping.columns["case_id"]
    case_column = case_column if isinstance(case_column, str) else case_column[0]
    frame = frame.reset_index(drop=True)
    frame.loc[1, time_column] = "soon"
    case = frame.loc[1, case_column]
    data = frame.to_csv(index=False).encode()
    response = api.post("/v1/predict/batch", files={"file": ("four.csv", data, "text/csv")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows_ignored"] == 1 and body["cases"] == 4
    [noted] = [p for p in body["predictions"] if p["case_id"] == case]
    assert any(n.startswith("row 2 ignored: ") and "soon" in n for n in noted["notes"]), \
        noted["notes"]
    forecast = api.post("/v1/forecast", files={"file": ("four.csv", data, "text/csv")})
    assert forecast.status_code == 200, forecast.text
    assert any(a.startswith("1 row(s) of four.csv could not be used") and "row 2" in a
               for a in forecast.json()["assumptions"])
    frame[time_column] = "soon"
    unusable = frame.to_csv(index=False).encode()
    for route in ("/v1/predict/batch", "/v1/forecast"):
        response = api.post(route, files={"file": ("four.csv", unusable, "text/csv")})
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith(
            f"four.csv: no usable event: all {len(frame)} row(s) quarantined, e.g. row 1: ")


def test_an_upload_read_wrongly_as_a_whole_is_refused_as_the_cli_refuses_it(
        api, trained) -> None:
    """More rows without a usable time than the mapping allows: the file was read with
    the wrong format; scoring the rest would answer silently on a misread log."""
    events = open_cases(trained, 4)
    frame = export_frame(events, trained.data.log.mapping).reset_index(drop=True)
    time_column = trained.data.log.mapping.columns["timestamp"]
    time_column = time_column if isinstance(time_column, str) else time_column[0]
    frame.loc[: len(frame) // 4, time_column] = "soon"  # a quarter of the rows
    data = frame.to_csv(index=False).encode()
    for route in ("/v1/predict/batch", "/v1/forecast"):
        response = api.post(route, files={"file": ("quarter.csv", data, "text/csv")})
        assert response.status_code == 422, response.text
        assert "have no usable time" in response.json()["detail"]
        assert "max_unusable_timestamps" in response.json()["detail"]
