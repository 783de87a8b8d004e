"""Order-aware encoders (features.sequence): exact values on a tiny log, and no leakage.

The leakage property is the pipeline's (tests/features/test_pipeline_properties.py),
checked here on these encoders alone: whatever happens strictly after a cut time t
leaves every prefix ending at or before t exactly as it was.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from features.prefixes import prepare_events
from features.sequence import ChangingAttributeEncoder, SequenceEncoder
from tests.features.test_pipeline_properties import (
    SETTINGS,
    assert_frames_equal,
    canonical_frame,
    canonical_logs,
    future_changes,
)

T0 = pd.Timestamp("2024-01-01", tz="UTC")
DAY = pd.Timedelta(days=1)


def _log() -> pd.DataFrame:
    rows = []
    for case, steps in {
        "A": [("Lead Captured", 0, "u1"), ("Quote Sent", 1, "u1"), ("Quote Sent", 3, "u2"),
              ("Negotiation", 4, "u2"), ("Quote Sent", 10, "u1")],
        "B": [("Lead Captured", 0, "u3"), ("Negotiation", 2, "u3")],
    }.items():
        rows += [{"case_id": case, "activity": activity, "timestamp": T0 + day * DAY,
                  "resource": resource, "region": "North"} for activity, day, resource in steps]
    return canonical_frame(rows)


def test_sequence_features_on_a_tiny_log() -> None:
    prepared = prepare_events(_log())
    enc = SequenceEncoder(min_frequency=1).fit(prepared)
    out = enc.transform(prepared)
    a = out.iloc[:5]
    assert a["activity_lag_2"].astype(object).tolist()[2:] == [
        "Lead Captured", "Quote Sent", "Quote Sent"]
    assert a["activity_lag_2"].isna().tolist()[:2] == [True, True]
    assert a["activity_lag_3"].astype(object).tolist()[3:] == ["Lead Captured", "Quote Sent"]
    assert a["n_quote_sent_then_quote_sent"].tolist() == [0, 0, 1, 1, 1]
    assert a["n_negotiation_then_quote_sent"].tolist() == [0, 0, 0, 0, 1]
    # days since each activity last happened (NaN before it first happens)
    assert a["days_since_quote_sent"].tolist()[1:] == [0.0, 0.0, 1.0, 0.0]
    assert np.isnan(a["days_since_quote_sent"].iloc[0])
    assert a["days_since_negotiation"].tolist()[3:] == [0.0, 6.0]
    b = out.iloc[5:]
    assert b["n_lead_captured_then_negotiation"].tolist() == [0, 1]
    assert b["days_since_lead_captured"].tolist() == [0.0, 2.0]
    assert b["n_quote_sent_then_quote_sent"].tolist() == [0, 0]  # B's own events only


def test_changing_attributes_on_a_tiny_log() -> None:
    prepared = prepare_events(_log())
    enc = ChangingAttributeEncoder(columns=["resource", "region"], min_frequency=1).fit(prepared)
    # the region never changes within a case: no columns for it
    assert not any("region" in name for name in enc.feature_names_out_)
    out = enc.transform(prepared)
    assert out["n_resource_changes"].tolist() == [0, 0, 1, 1, 2, 0, 0]
    assert out["n_distinct_resource"].tolist() == [1, 1, 2, 2, 2, 1, 1]
    assert out["n_resource_u1"].tolist() == [1, 2, 2, 2, 3, 0, 0]
    assert out["n_resource_u3"].tolist() == [0, 0, 0, 0, 0, 1, 2]


def test_a_log_without_order_or_changes_gives_no_columns() -> None:
    rows = [{"case_id": f"C{i}", "activity": "Lead Captured", "timestamp": T0 + i * DAY,
             "resource": "u1"} for i in range(10)]
    prepared = prepare_events(canonical_frame(rows))
    assert ChangingAttributeEncoder(columns=["resource"]).fit(prepared).feature_names_out_ == []
    names = SequenceEncoder(min_frequency=1).fit(prepared).feature_names_out_
    assert names == ["days_since_lead_captured"]  # no lags, no transitions


def _encoded_until(encoders: list, log: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    prepared = prepare_events(log)
    frame = pd.concat([enc.transform(prepared) for enc in encoders], axis=1)
    keys = prepared[["case_id", "prefix_len", "timestamp"]].reset_index(drop=True)
    frame = pd.concat([keys, frame.reset_index(drop=True)], axis=1)
    return frame[frame["timestamp"] <= t].set_index(["case_id", "prefix_len"]).sort_index()


@given(st.data())
@SETTINGS
def test_changes_after_t_never_change_earlier_prefixes(data: st.DataObject) -> None:
    log = data.draw(canonical_logs(), label="log")
    prepared = prepare_events(log)
    encoders = [SequenceEncoder(min_frequency=1).fit(prepared),
                ChangingAttributeEncoder(columns=["resource", "stage", "rep", "region"],
                                         min_frequency=1).fit(prepared)]
    for cut in range(2):
        t, modified = data.draw(future_changes(log), label=f"modified {cut}")
        expected = _encoded_until(encoders, log, t)
        found = _encoded_until(encoders, modified, t)
        assert found.index.equals(expected.index)
        assert_frames_equal(found, expected, exact=True)
