"""The process insight over HTTP: same numbers as the Python call, key required."""

from __future__ import annotations

import io

import pandas as pd
from fastapi.testclient import TestClient

from features.log import read_log
from insight import analyze


def test_the_training_logs_insight_is_served_with_every_section(client: TestClient,
                                                                 trained) -> None:
    body = client.get("/v1/insight", params={"max_rows": 50}).json()
    assert set(body["sections"]) == {"overview", "process_map", "variants", "funnel",
                                     "bottlenecks", "rework", "conformance", "discounts",
                                     "payments", "segments"}
    assert all(s["available"] for s in body["sections"].values()), body["sections"]
    assert body["headlines"]
    cases = body["sections"]["overview"]["tables"]["figures"]["records"][0]["cases"]
    # the run logs the whole log's events; the insight describes every case of it
    assert cases == trained.data.log.events["case_id"].nunique()
    edges = body["sections"]["process_map"]["tables"]["edges"]
    assert 0 < len(edges["records"]) <= 50 and edges["rows"] >= len(edges["records"])


def test_one_section_and_a_segmentation(client: TestClient) -> None:
    funnel = client.get("/v1/insight/funnel").json()
    assert funnel["section"] == "funnel" and funnel["available"]
    by_region = client.get("/v1/insight", params={"by": "region"}).json()
    assert by_region["by"] == "region" and len(by_region["by_segment"]) >= 2
    wrong = client.get("/v1/insight", params={"by": "shoe_size"})
    assert wrong.status_code == 422 and "shoe_size" in wrong.json()["detail"]
    assert client.get("/v1/insight/nothing").status_code == 422


def test_an_uploaded_log_gets_the_insight_the_python_call_gives(client: TestClient,
                                                                 small_log) -> None:
    data = small_log.read_bytes()
    body = client.post("/v1/insight", files={"file": ("log.csv", data, "text/csv")}).json()
    expected = analyze(read_log(small_log)).to_dict(1000)
    assert body["sections"]["variants"] == expected["sections"]["variants"]
    assert body["headlines"] == expected["headlines"]
    bad = client.post("/v1/insight", files={"file": ("log.xlsx", b"not a zip", "x")})
    assert bad.status_code == 422 and "log.xlsx" in bad.json()["detail"]


def test_the_insight_needs_the_key(client: TestClient) -> None:
    assert client.get("/v1/insight", headers={"X-API-Key": "wrong"}).status_code == 401
    frame = pd.DataFrame({"a": [1]})
    buffer = io.BytesIO()
    frame.to_csv(buffer)
    assert client.post("/v1/insight", headers={"X-API-Key": "wrong"},
                       files={"file": ("x.csv", buffer.getvalue(), "text/csv")}
                       ).status_code == 401
