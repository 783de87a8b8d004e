"""Concurrent predictions scored in one pass get exactly the answers they get alone."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from features.errors import EventLogError
from serving.coalesce import PredictionCoalescer
from serving.schemas import EXAMPLE_CASE, PredictRequest
from serving.scoring import predict_one, predict_together
from tests.serving.test_api import case_request


def requests_of_all_kinds(trained) -> list[PredictRequest]:
    """Running and decided cases sharing reps, regions and accounts (some of them cases
    the served history holds), odd input, and a case with no usable event."""
    events = trained.data.log.events
    by_rep = events.groupby("case_id")["rep"].first()
    rep = by_rep.value_counts().index[0]
    same_rep = by_rep[by_rep == rep].index[:6]  # cases of the training history too
    bodies = [case_request(events, case, k) for case, k in zip(same_rep, [2, 3, 4, 5, 30, 6],
                                                                  strict=True)]
    test = trained.data.split.test
    bodies += [case_request(test, case, 3) for case in test["case_id"].unique()[:4]]
    odd = {**EXAMPLE_CASE, "case_id": "ODD-1",
           "attributes": {**EXAMPLE_CASE["attributes"], "rep": rep, "colour": "blue"},
           "events": [*EXAMPLE_CASE["events"][::-1],
                      {"activity": "Coffee With Client", "timestamp": "2024-09-21T10:00:00Z"},
                      {"activity": "Quote Issued", "timestamp": "9999-12-31T00:00:00Z"}]}
    won = {**EXAMPLE_CASE, "case_id": "WON-1", "events": [
        *EXAMPLE_CASE["events"], {"activity": "Opportunity Won",
                                  "timestamp": "2024-10-01T10:00:00Z"}]}
    unusable = {"case_id": "NOTHING-1", "events": [
        {"activity": "Lead Captured", "timestamp": "9999-12-31T00:00:00Z"}]}
    bodies += [odd, won, unusable, {**EXAMPLE_CASE}]
    requests = []
    for body in bodies:
        body = {**body, "explain": True, "top_k": 4}
        requests.append(PredictRequest.model_validate(body))
    return requests


def alone(snapshot, request: PredictRequest) -> dict[str, Any] | Exception:
    try:
        return predict_one(snapshot, request)
    except EventLogError as exc:
        return exc


def assert_same_answers(found: list[Any], expected: list[Any]) -> None:
    assert len(found) == len(expected)
    for got, want in zip(found, expected, strict=True):
        if isinstance(want, Exception):
            assert type(got) is type(want) and str(got) == str(want)
        else:
            assert got == want, f"{want['case_id']}: the pass changed the answer"


def test_one_pass_answers_each_request_as_if_alone(store, trained) -> None:
    snapshot = store.snapshot
    requests = requests_of_all_kinds(trained)
    expected = [alone(snapshot, r) for r in requests]
    assert isinstance(expected[-2], EventLogError)  # the unusable case fails alone ...
    assert "placeholder date" in str(expected[-2])
    notes = " ".join(expected[-4]["notes"])
    assert "Coffee With Client" in notes and "colour" in notes and "event 6 ignored" in notes
    found = predict_together(snapshot, requests)
    assert_same_answers(found, expected)  # ... and in the pass, which the others survive
    # the pass really scored them together: the rep's cases see the history, not each other
    by_case = {a["case_id"]: a for a in found if isinstance(a, dict)}
    assert len({a["win_probability"] for a in by_case.values()}) > 5


def test_concurrent_requests_share_passes_and_keep_their_answers(store, trained) -> None:
    snapshot = store.snapshot
    requests = requests_of_all_kinds(trained)
    requests.append(requests[0])  # the same request twice at once: one answer for both
    requests.append(requests[1].model_copy(update={"top_k": 2}))  # answered another way
    # the same case with other events cannot share the pass: it waits for the next
    requests.append(requests[2].model_copy(update={"events": requests[2].events[:-1]}))
    expected = [alone(snapshot, r) for r in requests]
    coalescer = PredictionCoalescer(predict_together, max_cases=32)

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(*(coalescer.predict(snapshot, r) for r in requests),
                                    return_exceptions=True)

    found = asyncio.run(all_at_once())
    assert_same_answers(found, expected)
    counts = coalescer.counts
    assert counts.requests == len(requests)
    # all but the three that cannot join, the twin sharing its answer; then each of the
    # other two alone (they differ in top_k)
    assert counts.sizes == {len(requests) - 3: 1, 1: 2} and counts.shared_answers == 1
    assert found[-3] is found[0]


def test_pass_size_is_bounded_and_coalescing_can_be_switched_off(store, trained) -> None:
    snapshot = store.snapshot
    requests = requests_of_all_kinds(trained)[:7]
    requests.append(requests[0])  # shared when coalescing, scored again when not
    for max_cases, enabled, passes in [(3, True, 3), (32, False, 8)]:
        coalescer = PredictionCoalescer(predict_together, max_cases=max_cases, enabled=enabled)

        async def all_at_once(c: PredictionCoalescer = coalescer) -> list[Any]:
            return await asyncio.gather(*(c.predict(snapshot, r) for r in requests))

        assert_same_answers(asyncio.run(all_at_once()), [alone(snapshot, r) for r in requests])
        assert coalescer.counts.passes == passes
    with pytest.raises(ValueError, match="at least 1"):
        PredictionCoalescer(predict_together, max_cases=0)


def test_requests_equal_only_in_python_are_not_answered_as_one(store) -> None:
    """1, 1.0 and true compare equal in Python but are different text to the reader
    (``true`` is not a number): such requests must not share an answer."""
    def with_value(value: object, case_id: str = "TWIN") -> PredictRequest:
        return PredictRequest.model_validate({**EXAMPLE_CASE, "case_id": case_id,
                                              "attributes": {**EXAMPLE_CASE["attributes"],
                                                             "value": value}})

    snapshot = store.snapshot
    requests = [with_value(1), with_value(True), with_value(1)]
    assert requests[0] == requests[1]  # what pydantic's == says
    coalescer = PredictionCoalescer(predict_together)

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(*(coalescer.predict(snapshot, r) for r in requests),
                                    return_exceptions=True)

    found = asyncio.run(all_at_once())
    assert_same_answers(found, [alone(snapshot, r) for r in requests])
    assert isinstance(found[1], EventLogError)  # "true" is not a value: nothing usable
    assert found[0] != found[1] and coalescer.counts.shared_answers == 1  # only the 1s
    # blanks around an id are not part of it: " X" and "X" are one case, not two
    spaced = [with_value(1, " X"), with_value(2, "X")]
    assert spaced[0].case_id == "X"
    together = PredictionCoalescer(predict_together)

    async def spaced_at_once() -> list[Any]:
        return await asyncio.gather(*(together.predict(snapshot, r) for r in spaced))

    assert_same_answers(asyncio.run(spaced_at_once()), [alone(snapshot, r) for r in spaced])
    assert together.counts.sizes == {1: 2}  # the same case with other events: two passes


def test_a_failing_pass_reaches_every_request_and_the_next_pass_runs(store) -> None:
    calls: list[int] = []

    def flaky(snapshot, requests) -> list[Any]:
        calls.append(len(requests))
        if len(calls) == 1:
            raise RuntimeError("scoring broke")
        return [{"case_id": r.case_id} for r in requests]

    coalescer = PredictionCoalescer(flaky)
    request = PredictRequest.model_validate(EXAMPLE_CASE)

    async def two_rounds() -> tuple[list[Any], dict[str, Any]]:
        first = await asyncio.gather(coalescer.predict(store.snapshot, request),
                                     return_exceptions=True)
        return first, await coalescer.predict(store.snapshot, request)

    first, second = asyncio.run(two_rounds())
    assert isinstance(first[0], RuntimeError) and second == {"case_id": "OPP-API-1"}


def test_concurrent_http_requests_get_their_own_answers(client, store, trained) -> None:
    """Through the app: threads post different cases at once; each answer is its own."""
    test = trained.data.split.test
    bodies = [case_request(test, case, 4) for case in test["case_id"].unique()[:8]]
    expected = {b["case_id"]: client.post("/v1/predict", json=b).json() for b in bodies}
    found: dict[str, list[dict[str, Any]]] = {}

    def post(body: dict[str, Any]) -> None:
        for _ in range(3):
            response = client.post("/v1/predict", json=body)
            assert response.status_code == 200, response.text
            found.setdefault(body["case_id"], []).append(response.json())

    threads = [threading.Thread(target=post, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for case, answers in found.items():
        assert len(answers) == 3 and all(a == expected[case] for a in answers)
    assert set(found) == set(expected) and len(found) == 8
    assert client.app.state.coalescer.counts.largest_pass > 1  # they did share passes


@pytest.mark.parametrize(("gather_ms", "second_round"), [(2000.0, [4]), (0.0, [1, 1, 1, 1])])
def test_a_pass_waits_for_as_many_requests_as_were_in_flight(gather_ms, second_round) -> None:
    """Closed-loop clients come back one by one; under concurrency the next pass waits
    (at most ``gather_ms``) for as many as were in flight, instead of taking the first
    alone and leaving the rest a whole pass behind."""
    sizes: list[int] = []

    def record(snapshot, requests) -> list[Any]:
        sizes.append(len(requests))
        return [{"case_id": r.case_id} for r in requests]

    coalescer = PredictionCoalescer(record, gather_ms=gather_ms)
    requests = [PredictRequest.model_validate({**EXAMPLE_CASE, "case_id": f"C{i}"})
                for i in range(4)]

    async def staggered(request: PredictRequest, delay: float) -> dict[str, Any]:
        await asyncio.sleep(delay)
        return await coalescer.predict(None, request)

    async def two_rounds() -> None:
        await asyncio.gather(*(coalescer.predict(None, r) for r in requests))
        await asyncio.gather(*(staggered(r, 0.03 * i) for i, r in enumerate(requests)))

    asyncio.run(two_rounds())
    assert sizes == [4, *second_round]


def test_a_failed_scoring_leaves_no_explanation_work_behind(store, monkeypatch, caplog) -> None:
    """SHAP values start beside the scoring thread before the predictions; when scoring
    then fails, those not yet started are cancelled (the next request's would wait behind
    them) and a running one's own error is logged, not lost."""
    import time

    from models.bundle import TargetBundle
    from serving.scoring import score_cases
    from serving.threads import beside_scoring

    snapshot = store.snapshot
    request = PredictRequest.model_validate({**EXAMPLE_CASE, "explain": True})
    started = threading.Event()
    release = threading.Event()
    calls: list[str] = []

    def slow_failing_shap(self: TargetBundle, M: Any) -> Any:
        calls.append(self.target_name)
        started.set()
        release.wait(5)
        raise RuntimeError("SHAP failed too")

    predicted: list[str] = []
    real_predictions = TargetBundle.predict_arrays

    def failing_predictions(self: TargetBundle, M: Any) -> Any:
        predicted.append(self.target_name)
        if len(predicted) < len(snapshot.models):  # SHAP of every target is queued
            return real_predictions(self, M)
        started.wait(5)  # the first SHAP call is running, the others wait
        raise ValueError("predictions failed")

    monkeypatch.setattr(TargetBundle, "contributions", slow_failing_shap)
    monkeypatch.setattr(TargetBundle, "predict_arrays", failing_predictions)
    with pytest.raises(ValueError, match="predictions failed"):
        score_cases(snapshot, [request], explain=True)
    release.set()
    beside_scoring(time.sleep, 0).result(timeout=5)  # the explanation thread is free
    assert len(snapshot.models) == 3
    assert calls == [next(iter(snapshot.models))]  # the queued two were cancelled
    assert "SHAP failed too" in caplog.text
