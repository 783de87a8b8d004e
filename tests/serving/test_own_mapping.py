"""Each served model reads a request or an upload through its own mapping."""

from __future__ import annotations

import copy
import dataclasses

from serving.schemas import EXAMPLE_CASE, PredictRequest
from serving.scoring import models_by_mapping, predict_one
from serving.store import Snapshot


def _with_renamed_quote(snapshot: Snapshot, target: str) -> Snapshot:
    """``snapshot`` with ``target``'s model reading "Quote Sent Out" as "Quote Issued"
    (as if retrained through a mapping that names the export's activity so)."""
    served = snapshot.get(target)
    mapping = served.bundle.mapping
    renamed = mapping.model_copy(update={
        "activities": {**mapping.activities, "Quote Sent Out": "Quote Issued"}})
    bundle = copy.copy(served.bundle)
    bundle.mapping = renamed
    bundle.__dict__.pop("_derived", None)  # what was derived from the old mapping
    models = {**snapshot.models, target: dataclasses.replace(served, bundle=bundle)}
    return dataclasses.replace(snapshot, models=models)


def test_each_champion_reads_the_request_through_its_own_mapping(store) -> None:
    snapshot = store.snapshot
    mixed = _with_renamed_quote(snapshot, "remaining_time")
    assert len(models_by_mapping(mixed)) == 2
    events = [{**e, "activity": "Quote Sent Out"} if e["activity"] == "Quote Issued" else e
              for e in EXAMPLE_CASE["events"]]
    sent = PredictRequest.model_validate({**EXAMPLE_CASE, "events": events})
    answer = predict_one(mixed, sent)
    usual = predict_one(snapshot, PredictRequest.model_validate(EXAMPLE_CASE))
    # the remaining-time model read the quote as its mapping names it: the usual answer
    assert answer["remaining_time"] == usual["remaining_time"]
    # the win model's mapping does not know the name: it counts an unknown activity
    assert answer["win_probability"] != usual["win_probability"]
    assert any("'Quote Sent Out' is unknown to the model" in note for note in answer["notes"])
