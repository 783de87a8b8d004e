"""The logged MLflow model scores its own input example under any mapping, and an input
with no usable event is an error that says why, not an empty answer."""

from __future__ import annotations

import dataclasses

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.log import export_frame
from models.bundle import NoUsableEventsError
from models.pyfunc import BundlePyfunc, input_example
from training.tracking import _log_model


def _german_dates(mapping):
    """The same export, with dates written as a German spreadsheet does."""
    fmt = mapping.format.model_copy(update={"timestamp_format": "%d.%m.%Y %H:%M:%S",
                                            "timezone": "Europe/Berlin"})
    return mapping.model_copy(update={"format": fmt, "name": "german-dates"})


def test_the_logged_model_scores_its_own_input_example_under_a_non_iso_mapping(
        trained) -> None:
    result = next(r for r in trained.results if r.target.name == "outcome")
    german = _german_dates(result.bundle.mapping)
    bundle = dataclasses.replace(result.bundle, mapping=german)
    with mlflow.start_run() as run:
        uri = _log_model(dataclasses.replace(result, bundle=bundle), trained.data)
    try:
        model = mlflow.pyfunc.load_model(uri)
        example = model.input_example
        assert isinstance(example, pd.DataFrame) and len(example)
        stamps = example["event_time"].astype(str)
        assert stamps.str.fullmatch(r"\d{2}\.\d{2}\.\d{4} \d{2}:\d{2}:\d{2}").all()
        scored = model.predict(example)
        cases = example["opportunity_id"].nunique()
        assert len(scored) == cases == 3
        # the same cases as an ISO export, read by the simulator's own mapping
        events = trained.data.log.events
        same = events[events["case_id"].isin(scored["case_id"])].groupby("case_id").head(4)
        expected = BundlePyfunc.output_for(result.bundle,
                                           export_frame(same, result.bundle.mapping))
        np.testing.assert_allclose(scored["p_win"].to_numpy(), expected["p_win"].to_numpy(),
                                   rtol=0, atol=1e-12)

        # what the example used to be (ISO text) is unusable under this mapping: an
        # error naming the reason, the row and the expected format, not an empty frame
        iso = export_frame(same, german)
        with pytest.raises(MlflowException) as caught:
            model.predict(iso)
        message = str(caught.value)
        assert f"none of the {len(iso)} event(s) is usable" in message
        assert f"unparseable_timestamp ({len(iso)} row(s))" in message
        assert "row 1, column 'event_time'" in message and "%d.%m.%Y %H:%M:%S" in message
    finally:
        MlflowClient().delete_run(run.info.run_id)


def test_input_example_writes_local_time_in_the_mappings_zone(trained) -> None:
    mapping = _german_dates(trained.data.log.mapping)
    events = trained.data.log.events.head(5)
    example = input_example(events, mapping)
    local = events["timestamp"].dt.tz_convert("Europe/Berlin").dt.strftime("%d.%m.%Y %H:%M:%S")
    assert example["event_time"].tolist() == local.tolist()
    # ISO mappings keep export_frame's UTC text
    iso = trained.data.log.mapping
    pd.testing.assert_frame_equal(input_example(events, iso), export_frame(events, iso))


def test_no_usable_event_raises_with_the_quarantine_reasons(trained, caplog) -> None:
    bundle = next(r for r in trained.results if r.target.name == "outcome").bundle
    events = trained.data.log.events.head(3)
    raw = export_frame(events, bundle.mapping).assign(event_time="not a date")
    raw.loc[2, "opportunity_id"] = None
    with pytest.raises(NoUsableEventsError) as caught:
        bundle.score_export(raw)
    message = str(caught.value)
    assert "none of the 3 event(s) is usable" in message
    assert "empty_case_id (1 row(s))" in message
    assert "unparseable_timestamp (2 row(s))" in message and "'not a date'" in message

    # some rows usable: they are scored, and the quarantined ones are logged, not hidden
    partial = export_frame(events, bundle.mapping)
    partial.loc[0, "event_time"] = "not a date"
    with caplog.at_level("WARNING", logger="models.bundle"):
        scored = bundle.score_export(partial).frame()
    assert len(scored) == events["case_id"].nunique()
    assert "1 of 3 event(s) quarantined" in caplog.text and "unparseable_timestamp" in caplog.text
