"""Prefix encoders on tiny inline logs, with exact expected matrices.

Each log is a handful of events whose features are worked out by hand in the comments;
the pipeline-level tests at the end check the fitted vocabulary (no learning in
``transform``), the feature schema and a pickle round trip.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest

from features.crosscase import CrossCaseEncoder
from features.encoders import (
    ActivityCountEncoder,
    AttributeEncoder,
    ConformanceEncoder,
    LastStateEncoder,
    NumericHistoryEncoder,
    TimeEncoder,
)
from features.errors import FeatureSchemaError
from features.mapping import default_mapping
from features.pipeline import PrefixPipeline
from features.prefixes import prepare_events
from features.schema import ROW_COLUMN
from tests.features.frames import canonical_columns

ROLES = default_mapping().roles
NAN = np.nan


def make_log(rows: list[tuple], columns: str) -> pd.DataFrame:
    """A canonical log from tuples; ``columns`` names the tuple fields after
    (case_id, activity, timestamp), the other canonical columns stay missing."""
    names = ["case_id", "activity", "timestamp", *columns.split()]
    raw = pd.DataFrame([dict(zip(names, r, strict=True)) for r in rows])
    return canonical_columns(raw)


def fit_transform(encoder, log: pd.DataFrame) -> pd.DataFrame:
    prepared = prepare_events(log)
    return encoder.fit(prepared).transform(prepared)


def assert_matrix(frame: pd.DataFrame, expected: dict[str, list[float]]) -> None:
    assert list(frame.columns) == list(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(frame[name].to_numpy(dtype="float64"), values,
                                   rtol=0, atol=1e-9, err_msg=name)


def labels_of(column: pd.Series) -> list[object]:
    return [None if pd.isna(v) else v for v in column.astype(object)]


# ------------------------------------------------------------------ activity counts
REWORK = make_log([
    ("A", "Lead Captured", "2024-01-01T09:00Z"),
    ("A", "Quote Issued", "2024-01-02T09:00Z"),
    ("A", "Discount Approved", "2024-01-03T09:00Z"),
    ("A", "Quote Issued", "2024-01-04T09:00Z"),
    ("A", "Quote Issued", "2024-01-05T09:00Z"),
    ("B", "Quote Issued", "2024-01-01T10:00Z"),
    ("B", "Lead Captured", "2024-01-02T10:00Z"),
], "")


def test_activity_counts_and_loops_are_cumulative_per_case() -> None:
    out = fit_transform(ActivityCountEncoder(), REWORK)
    assert_matrix(out, {
        "n_discount_approved": [0, 0, 1, 1, 1, 0, 0],
        "n_lead_captured": [1, 1, 1, 1, 1, 0, 1],
        "n_quote_issued": [0, 1, 1, 2, 3, 1, 1],  # B restarts at its own first event
        "n_other_activity": [0, 0, 0, 0, 0, 0, 0],
        "n_events": [1, 2, 3, 4, 5, 1, 2],
        "n_repeated_events": [0, 0, 0, 1, 2, 0, 0],
        "n_distinct_activities": [1, 2, 3, 3, 3, 1, 2],
    })


def test_activity_counts_put_unseen_activities_into_other() -> None:
    encoder = ActivityCountEncoder().fit(prepare_events(REWORK))
    other = prepare_events(make_log([
        ("C", "Lead Captured", "2024-02-01T09:00Z"),
        ("C", "Invoice Created", "2024-02-02T09:00Z"),
        ("C", "Mystery Step", "2024-02-03T09:00Z"),
        ("C", "Invoice Created", "2024-02-04T09:00Z"),
    ], ""))
    out = encoder.transform(other)
    assert encoder.activities_ == ["Discount Approved", "Lead Captured", "Quote Issued"]
    assert list(out["n_other_activity"]) == [0, 1, 2, 3]
    assert list(out["n_lead_captured"]) == [1, 1, 1, 1]
    assert list(out["n_repeated_events"]) == [0, 0, 0, 1]  # the second invoice is a loop
    assert list(out.columns) == list(encoder.get_feature_names_out())


# ------------------------------------------------------------------ numeric history
def test_numeric_history_min_max_mean_skip_missing_and_restart_per_case() -> None:
    log = make_log([
        ("A", "Lead Captured", "2024-01-01T09:00Z", NAN),
        ("A", "Quote Issued", "2024-01-02T09:00Z", 10.0),
        ("A", "Quote Issued", "2024-01-03T09:00Z", 20.0),
        ("A", "Meeting Held", "2024-01-04T09:00Z", NAN),
        ("A", "Quote Issued", "2024-01-05T09:00Z", 5.0),
        ("B", "Lead Captured", "2024-01-01T10:00Z", NAN),
        ("B", "Quote Issued", "2024-01-02T10:00Z", 7.0),
    ], "discount_pct")
    out = fit_transform(NumericHistoryEncoder(columns=["discount_pct"]), log)
    assert_matrix(out, {
        "discount_pct_min": [NAN, 10, 10, 10, 5, NAN, 7],  # B does not inherit A's 5
        "discount_pct_max": [NAN, 10, 20, 20, 20, NAN, 7],
        "discount_pct_mean": [NAN, 10, 15, 15, 35 / 3, NAN, 7],
    })


def test_numeric_history_drops_columns_empty_in_fit() -> None:
    log = make_log([("A", "Lead Captured", "2024-01-01T09:00Z", NAN)], "discount_pct")
    encoder = NumericHistoryEncoder(columns=["discount_pct"]).fit(prepare_events(log))
    assert encoder.feature_names_out_ == []


# ------------------------------------------------------------------ last state
STATES = make_log([
    ("A", "Lead Captured", "2024-01-01T09:00Z", "Lead", "ann"),
    ("A", "Quote Issued", "2024-01-02T09:00Z", NAN, "bob"),
    ("A", "Quote Accepted", "2024-01-03T09:00Z", "Negotiation", NAN),
    ("B", "Lead Captured", "2024-01-01T10:00Z", NAN, "ann"),
    ("B", "Meeting Held", "2024-01-02T10:00Z", "Qualification", "ann"),
], "stage resource")


def test_last_state_last_and_previous_activity_stage_and_resource() -> None:
    encoder = LastStateEncoder(min_frequency=1).fit(prepare_events(STATES))
    out = encoder.transform(prepare_events(STATES))
    assert list(out.columns) == ["last_activity", "prev_activity", "stage", "last_resource"]
    assert labels_of(out["last_activity"]) == ["Lead Captured", "Quote Issued", "Quote Accepted",
                                               "Lead Captured", "Meeting Held"]
    assert labels_of(out["prev_activity"]) == [None, "Lead Captured", "Quote Issued",
                                               None, "Lead Captured"]
    # the stage is carried forward within the case only: B starts without one
    assert labels_of(out["stage"]) == ["Lead", "Lead", "Negotiation", None, "Qualification"]
    assert labels_of(out["last_resource"]) == ["ann", "bob", None, "ann", "ann"]
    assert encoder.categories_["stage"] == ["Lead", "Negotiation", "Qualification"]
    assert all(isinstance(out[c].dtype, pd.CategoricalDtype) for c in out)


def test_last_state_min_frequency_and_unknown_values_become_missing() -> None:
    encoder = LastStateEncoder(min_frequency=2).fit(prepare_events(STATES))
    assert encoder.categories_["last_activity"] == ["Lead Captured"]
    assert encoder.categories_["last_resource"] == ["ann"]
    unseen = make_log([("Z", "Contract Signed", "2024-03-01T09:00Z", "Closing", "zoe")],
                      "stage resource")
    before = copy.deepcopy(encoder.categories_)
    out = encoder.transform(prepare_events(unseen))
    assert out.isna().all().all()
    assert encoder.categories_ == before
    assert list(out["stage"].cat.categories) == before["stage"]


# ------------------------------------------------------------------ time
TIMES = make_log([
    # 2024-03-30 is a Saturday; the invoice is re-issued on 04-13, the first one counts
    ("A", "Quote Issued", "2024-03-30T12:00Z", "Proposal", 30.0),
    ("A", "Quote Accepted", "2024-03-31T12:00Z", "Proposal", 30.0),
    ("A", "Invoice Created", "2024-04-03T18:00Z", "Negotiation", 30.0),
    ("A", "Invoice Created", "2024-04-13T18:00Z", NAN, 30.0),
    ("A", "Payment Received", "2024-05-20T18:00Z", "Closed Won", 30.0),
    ("B", "Lead Captured", "2024-01-01T00:00Z", "Lead", NAN),
    ("B", "Invoice Created", "2024-01-03T00:00Z", "Lead", NAN),
], "stage payment_terms_days")


def time_features(fiscal_year_start_month: int) -> pd.DataFrame:
    encoder = TimeEncoder(invoice_activities=ROLES.invoice,
                          fiscal_year_start_month=fiscal_year_start_month,
                          min_calendar_cycles=0)  # a few days' log: keep every feature
    return fit_transform(encoder, TIMES)


def test_calendar_features_need_a_span_of_several_cycles() -> None:
    """On a short log the position in the quarter stands in for the date: dropped."""
    short = make_log([("A", "Lead Captured", "2024-01-01T00:00Z"),
                      ("B", "Lead Captured", "2024-03-01T00:00Z")], "")
    encoder = TimeEncoder().fit(prepare_events(short))
    assert {"day_in_quarter", "days_to_quarter_end"} <= set(encoder.dropped_calendar_)
    assert "weekday" in encoder.feature_names_out_ and "hour" in encoder.feature_names_out_
    out = fit_transform(TimeEncoder(), short)
    assert "day_in_quarter" not in out and list(out.columns) == encoder.feature_names_out_
    assert encoder.feature_groups() == {}
    long = make_log([("A", "Lead Captured", "2022-01-01T00:00Z"),
                     ("B", "Lead Captured", "2023-03-01T00:00Z")], "")
    kept = TimeEncoder().fit(prepare_events(long))
    assert kept.dropped_calendar_ == [] and "days_to_quarter_end" in kept.feature_names_out_


def test_time_elapsed_gaps_and_stalls() -> None:
    out = time_features(1)
    assert_matrix(out[["elapsed_days", "gap_days", "max_gap_days", "mean_gap_days",
                       "days_in_stage", "hour", "weekday"]], {
        "elapsed_days": [0, 1, 4.25, 14.25, 51.25, 0, 2],
        "gap_days": [NAN, 1, 3.25, 10, 37, NAN, 2],
        "max_gap_days": [NAN, 1, 3.25, 10, 37, NAN, 2],
        "mean_gap_days": [NAN, 1, 2.125, 4.75, 12.8125, NAN, 2],
        # Proposal entered 03-30, Negotiation 04-03 (still current on 04-13), Closed Won
        "days_in_stage": [0, 1, 0, 10, 0, 0, 2],
        "hour": [12, 12, 18, 18, 18, 0, 0],
        "weekday": [5, 6, 2, 5, 0, 0, 2],
    })


def test_time_invoice_ageing_counts_from_the_first_invoice() -> None:
    out = time_features(1)
    assert_matrix(out[["days_since_invoice", "days_past_due"]], {
        "days_since_invoice": [NAN, NAN, 0, 10, 47, NAN, 0],
        # due = first invoice + 30 days; B has no terms, so no due date
        "days_past_due": [NAN, NAN, -30, -20, 17, NAN, NAN],
    })


@pytest.mark.parametrize(("fiscal_start", "day_in_quarter", "to_quarter_end"), [
    # calendar quarters: Q1 ends 04-01, Q2 runs 04-01 .. 07-01
    (1, [89.5, 90.5, 2.75, 12.75, 49.75, 0, 2], [1.5, 0.5, 88.25, 78.25, 41.25, 91, 89]),
    # fiscal year from February: quarters Feb-Apr, May-Jul, Nov-Jan
    (2, [58.5, 59.5, 62.75, 72.75, 19.75, 61, 63], [31.5, 30.5, 27.25, 17.25, 72.25, 31, 29]),
    (11, [58.5, 59.5, 62.75, 72.75, 19.75, 61, 63], [31.5, 30.5, 27.25, 17.25, 72.25, 31, 29]),
])
def test_time_position_in_the_fiscal_quarter(fiscal_start: int, day_in_quarter: list[float],
                                            to_quarter_end: list[float]) -> None:
    out = time_features(fiscal_start)
    assert_matrix(out[["day_in_quarter", "days_to_quarter_end"]], {
        "day_in_quarter": day_in_quarter, "days_to_quarter_end": to_quarter_end})


def test_time_without_invoice_roles_or_stages_leaves_their_columns_out() -> None:
    log = make_log([("A", "Lead Captured", "2024-01-01T00:00Z"),
                    ("A", "Invoice Created", "2024-01-02T00:00Z")], "")
    encoder = TimeEncoder()
    out = fit_transform(encoder, log)
    # missing on every training row: left out, not built (features.pruning)
    unread = {"days_since_invoice", "days_past_due", "days_in_stage"}
    assert not unread & set(out.columns) and not unread & set(encoder.feature_names_out_)
    assert out["elapsed_days"].tolist() == [0.0, 1.0]


# ------------------------------------------------------------------ conformance
def test_conformance_out_of_order_steps_and_stage_regressions() -> None:
    log = make_log([
        ("A", "Lead Captured", "2024-01-01T00:00Z", "Lead"),
        ("A", "Opportunity Created", "2024-01-02T00:00Z", "Prospecting"),
        ("A", "Quote Issued", "2024-01-03T00:00Z", "Proposal"),
        ("A", "Opportunity Qualified", "2024-01-04T00:00Z", "Qualification"),  # both back
        ("A", "Meeting Held", "2024-01-05T00:00Z", NAN),  # not on the path, no stage
        ("A", "Quote Accepted", "2024-01-06T00:00Z", "Closed Won"),  # stage not ordered
        ("A", "Quote Issued", "2024-01-07T00:00Z", "Negotiation"),  # re-quote: back
        ("B", "Quote Issued", "2024-01-01T00:00Z", "Proposal"),
        ("B", "Lead Captured", "2024-01-02T00:00Z", "Lead"),
    ], "stage")
    encoder = ConformanceEncoder(expected_order=ROLES.expected_order,
                                 stage_order=ROLES.stage_order)
    assert_matrix(fit_transform(encoder, log), {
        "n_out_of_order": [0, 0, 0, 1, 1, 1, 2, 0, 1],
        "path_progress": [0, 1, 3, 3, 3, 4, 4, 3, 3],
        "n_stage_regressions": [0, 0, 0, 1, 1, 1, 1, 0, 1],
        "stage_index": [0, 1, 3, 2, 2, 2, 4, 3, 0],
        "max_stage_index": [0, 1, 3, 3, 3, 3, 4, 3, 3],
    })


def test_conformance_without_orders_has_no_features() -> None:
    encoder = ConformanceEncoder().fit(prepare_events(REWORK))
    assert encoder.feature_names_out_ == []
    assert encoder.transform(prepare_events(REWORK)).shape == (7, 0)


# ------------------------------------------------------------------ cross-case
CROSS = make_log([
    # A: rep R, account X, won 01-11, invoiced 01-21 with 30 days' terms (due 02-20),
    # paid 03-01: 10 days late; cycle 01-01 -> 03-01 = 60 days
    ("A", "Lead Captured", "2024-01-01T00:00:00Z", "R", "N", "X", 30.0),
    ("A", "Opportunity Won", "2024-01-11T00:00:00Z", "R", "N", "X", 30.0),
    ("A", "Invoice Created", "2024-01-21T00:00:00Z", "R", "N", "X", 30.0),
    ("A", "Payment Received", "2024-03-01T00:00:00Z", "R", "N", "X", 30.0),
    # B: rep R, account X, lost 02-04; cycle 30 days
    ("B", "Lead Captured", "2024-01-05T00:00:00Z", "R", "N", "X", NAN),
    ("B", "Opportunity Lost", "2024-02-04T00:00:00Z", "R", "N", "X", NAN),
    # C: rep R, account X, prefixes one second before and exactly at each fact of A, B
    ("C", "Lead Captured", "2024-01-10T23:59:59Z", "R", "N", "X", NAN),
    ("C", "Meeting Held", "2024-01-11T00:00:00Z", "R", "N", "X", NAN),
    ("C", "Meeting Held", "2024-02-03T23:59:59Z", "R", "N", "X", NAN),
    ("C", "Meeting Held", "2024-02-04T00:00:00Z", "R", "N", "X", NAN),
    ("C", "Meeting Held", "2024-02-29T23:59:59Z", "R", "N", "X", NAN),
    ("C", "Meeting Held", "2024-03-01T00:00:00Z", "R", "N", "X", NAN),
    # D: another rep, region and account
    ("D", "Lead Captured", "2024-01-03T00:00:00Z", "S", "E", "Y", NAN),
], "rep region account payment_terms_days")
CROSS_NAMES = ["rep_open_cases", "region_open_cases", "rep_decided_cases", "rep_win_rate",
               "rep_mean_cycle_days", "account_prior_cases", "account_won_cases",
               "account_paid_cases", "account_mean_payment_delay_days"]


def cross_features(log: pd.DataFrame = CROSS) -> pd.DataFrame:
    encoder = CrossCaseEncoder(roles=ROLES).fit(prepare_events(CROSS))
    prepared = prepare_events(log)
    out = encoder.transform(prepared)
    assert list(out.columns) == list(encoder.get_feature_names_out())
    return pd.concat([prepared[["case_id", "prefix_len"]], out], axis=1).set_index(
        ["case_id", "prefix_len"])


def test_cross_case_facts_count_from_the_moment_they_are_known() -> None:
    out = cross_features().loc["C", CROSS_NAMES]
    assert_matrix(out, {
        # R's cases started so far (C included) minus those ended (B 02-04, A 03-01)
        "rep_open_cases": [3, 3, 3, 2, 2, 1],
        "region_open_cases": [3, 3, 3, 2, 2, 1],
        # A's win counts at exactly 01-11 00:00:00, not a second before; B's loss at 02-04
        "rep_decided_cases": [0, 1, 1, 2, 2, 2],
        "rep_win_rate": [NAN, 1, 1, 0.5, 0.5, 0.5],
        "rep_mean_cycle_days": [NAN, NAN, NAN, 30, 30, 45],
        "account_prior_cases": [2, 2, 2, 2, 2, 2],  # A and B, never C itself
        "account_won_cases": [0, 1, 1, 1, 1, 1],
        # A's payment (10 days late) is known at 03-01 00:00:00, not at 02-29 23:59:59
        "account_paid_cases": [0, 0, 0, 0, 0, 1],
        "account_mean_payment_delay_days": [NAN, NAN, NAN, NAN, NAN, 10],
    })


def test_cross_case_own_history_and_other_groups() -> None:
    out = cross_features()
    a = out.loc["A", CROSS_NAMES]
    assert list(a["rep_open_cases"]) == [1, 3, 3, 1]  # B and C start between A1 and A2
    assert list(a["rep_decided_cases"]) == [0, 1, 1, 2]  # A's own win counts once logged
    assert list(a["account_prior_cases"]) == [0, 2, 2, 2]
    assert list(a["account_paid_cases"]) == [0, 0, 0, 1]
    d = out.loc[("D", 1), CROSS_NAMES]
    assert d.tolist()[:3] == [1, 1, 0] and np.isnan(d["rep_win_rate"])
    assert d["account_prior_cases"] == 0 and np.isnan(d["account_mean_payment_delay_days"])


def test_cross_case_running_case_alone_sees_the_fitted_history() -> None:
    """What the API does: one running case, scored against the training log's history."""
    running = CROSS[CROSS["case_id"].eq("C")].iloc[:4]
    alone = cross_features(running)
    full = cross_features()
    pd.testing.assert_frame_equal(alone, full.loc[alone.index], check_exact=True)


def test_cross_case_unknown_rep_and_account_have_no_history() -> None:
    newcomer = make_log([("Q", "Lead Captured", "2024-03-02T00:00:00Z", "NEWREP", NAN, "NEWACC",
                          NAN)], "rep region account payment_terms_days")
    out = cross_features(newcomer).iloc[0]
    assert out["rep_open_cases"] == 1 and out["rep_decided_cases"] == 0
    assert np.isnan(out["rep_win_rate"]) and np.isnan(out["region_open_cases"])
    assert out["account_prior_cases"] == 0


def test_rep_started_recent_counts_the_cases_started_in_the_last_30_days() -> None:
    """Window (t - 30 days, t], own case included; also for the log's very first case
    (a regression: times are shifted so that the first event is 0, and the window's
    lower end was clipped to 0, which dropped a case started at that instant)."""
    log = make_log([
        ("A", "Lead Captured", "2024-01-01T00:00:00Z", "R"),
        ("B", "Lead Captured", "2024-01-06T00:00:00Z", "R"),
        ("C", "Lead Captured", "2024-03-06T00:00:00Z", "R"),
        ("D", "Lead Captured", "2024-02-05T00:00:00Z", "R"),  # exactly 30 days before C
        ("E", "Lead Captured", "2024-02-05T00:00:01Z", "R"),
    ], "rep")
    out = fit_transform(CrossCaseEncoder(roles=ROLES), log)
    # A: A; B: A, B; C: E, C (D is 30 days old); D: D (B is 30 days old); E: D, E
    assert list(out["rep_started_recent"]) == [1, 2, 2, 1, 2]


# ------------------------------------------------------------------ attributes
def test_attributes_carry_the_last_known_value_with_fixed_categories() -> None:
    log = make_log([
        ("A", "Lead Captured", "2024-01-01T00:00Z", "web", 100.0),
        ("A", "Quote Issued", "2024-01-02T00:00Z", NAN, NAN),
        ("A", "Quote Issued", "2024-01-03T00:00Z", "partner", 250.0),
        ("B", "Lead Captured", "2024-01-01T00:00Z", NAN, NAN),
        ("B", "Quote Issued", "2024-01-02T00:00Z", "web", 50.0),
    ], "lead_source value")
    encoder = AttributeEncoder(categorical=["lead_source", "product"], numeric=["value"],
                               min_frequency=2)
    out = fit_transform(encoder, log)
    assert encoder.categories_ == {"lead_source": ["web"]}  # product is empty: dropped
    assert list(out.columns) == ["lead_source", "value"]
    assert labels_of(out["lead_source"]) == ["web", "web", None, None, "web"]
    np.testing.assert_array_equal(out["value"], [100, 100, 250, NAN, 50])


# ------------------------------------------------------------------ the pipeline
@pytest.fixture(scope="module")
def pipeline() -> PrefixPipeline:
    log = pd.concat([CROSS, STATES.assign(case_id="S" + STATES["case_id"])], ignore_index=True)
    log[ROW_COLUMN] = np.arange(1, len(log) + 1, dtype="int64")
    return PrefixPipeline(roles=ROLES, min_frequency=1).fit(log)


def test_pipeline_columns_are_keys_then_the_schema(pipeline: PrefixPipeline) -> None:
    frame = pipeline.transform(CROSS)
    names = list(pipeline.get_feature_names_out())
    assert list(frame.columns) == ["case_id", "prefix_len", "prefix_end", "case_start", *names]
    assert names == [n for enc in pipeline.encoders_ for n in enc.get_feature_names_out()]
    assert list(pipeline.feature_matrix(frame).columns) == names
    assert set(pipeline.readable_names()) == set(names)
    assert frame["prefix_len"].tolist() == [1, 2, 3, 4, 1, 2, 1, 2, 3, 4, 5, 6, 1]


def test_pipeline_transform_never_learns(pipeline: PrefixPipeline) -> None:
    learned = pickle.dumps([enc.__dict__ for enc in pipeline.encoders_[:-1]])
    schema = copy.deepcopy(pipeline.schema_)
    history = pipeline.encoders_[-1].history_.copy(deep=True)
    other = make_log([("Z", "Brand New Step", "2025-01-01T00:00Z", "Nowhere", "Zed", "Rz")],
                     "stage resource rep")
    frame = pipeline.transform(other)
    assert pickle.dumps([enc.__dict__ for enc in pipeline.encoders_[:-1]]) == learned
    assert pipeline.schema_ == schema
    pd.testing.assert_frame_equal(pipeline.encoders_[-1].history_, history)
    assert list(history.index) == ["A", "B", "C", "D", "SA", "SB"]
    pipeline.check_features(frame)
    for column in ("last_activity", "stage", "last_resource", "rep"):
        assert frame[column].isna().all(), column
    assert frame["n_other_activity"].tolist() == [1]


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.drop(columns="rep_win_rate"), "rep_win_rate"),
    (lambda f: f.assign(n_events=f["n_events"].astype("float64")), "'n_events'"),
    (lambda f: f.assign(elapsed_days=f["elapsed_days"].astype(object)), "'elapsed_days'"),
    (lambda f: f.assign(rep=f["rep"].cat.add_categories(["Zed"])), "'rep'"),
    (lambda f: f.assign(stage=f["stage"].astype(object)), "'stage'"),
])
def test_check_features_names_what_differs(pipeline: PrefixPipeline, change,
                                           message: str) -> None:
    frame = pipeline.transform(CROSS)
    pipeline.check_features(frame)
    with pytest.raises(FeatureSchemaError, match=message):
        pipeline.check_features(change(frame))
    with pytest.raises(FeatureSchemaError, match=message):
        pipeline.feature_matrix(change(frame))


def test_transform_refuses_a_log_without_trained_columns(pipeline: PrefixPipeline) -> None:
    with pytest.raises(FeatureSchemaError, match="rep"):
        pipeline.transform(CROSS.drop(columns="rep"))
    naive = CROSS.assign(timestamp=CROSS["timestamp"].dt.tz_localize(None))
    with pytest.raises(FeatureSchemaError, match="timestamp"):
        pipeline.transform(naive)


def test_pickled_pipeline_keeps_categories_and_output(pipeline: PrefixPipeline) -> None:
    restored = pickle.loads(pickle.dumps(pipeline))
    assert restored.schema_ == pipeline.schema_
    assert restored.encoders_[0].categories_ == pipeline.encoders_[0].categories_
    assert restored.schema_["rep"]["categories"] == ["R", "S"]
    for log in (CROSS, STATES):
        pd.testing.assert_frame_equal(restored.transform(log), pipeline.transform(log),
                                      check_exact=True)


def test_long_text_columns_read_as_shared_values_equal_the_plain_conversion() -> None:
    from features.prefixes import _as_values

    rng = np.random.default_rng(3)
    values = rng.choice(np.array(["Rep 1", "Rep 2", " Rep 3", None], dtype=object), 6000)
    column = pd.Series(values, dtype="str")
    shared = _as_values(column)
    plain = column.to_numpy()
    assert len(shared) == len(plain) == 6000
    assert (pd.isna(shared) == pd.isna(plain)).all() and pd.isna(shared).any()
    present = ~pd.isna(plain)
    assert (shared[present] == plain[present]).all()


@pytest.mark.parametrize("size", [3, 3000])  # the dict path and the pandas path
def test_lookup_finds_any_value_and_keeps_the_last_position_of_a_repeat(size: int) -> None:
    from features.prefixes import Lookup

    lookup = Lookup([7, "a", 7.5, "a", None])
    assert Lookup([]).positions(np.array(["a"] * size, dtype=object)).tolist() == [-1] * size
    queries = np.array([7, "a", 7.5, "b", None, np.nan] * (size // 6 + 1), dtype=object)[:size]
    expected = {7: 0, "a": 3, 7.5: 2}
    wanted = [-1 if pd.isna(q) else expected.get(q, -1) for q in queries]
    assert lookup.positions(queries).tolist() == wanted


def test_a_missing_activity_is_its_own_step_not_another_case_s() -> None:
    log = make_log([
        ("A", "x", "2024-01-01T09:00Z"), ("A", "Zeta", "2024-01-02T09:00Z"),
        ("B", "x", "2024-01-01T10:00Z"), ("B", None, "2024-01-02T10:00Z"),
    ], "")
    whole = fit_transform(ActivityCountEncoder(), log)
    assert whole["n_repeated_events"].tolist() == [0, 0, 0, 0]


def test_conformance_positions_are_worded_with_the_ends_of_their_scale() -> None:
    from features.encoders import ConformanceEncoder

    encoder = ConformanceEncoder(expected_order=["Lead", "Quote", "Paid"],
                                 stage_order=["Prospecting", "Proposal", "Closing"])
    names = encoder.fit(pd.DataFrame()).readable_names()
    assert names["max_stage_index"] == "furthest sales stage reached (0 = Prospecting, " \
                                       "2 = Closing)"
    assert names["path_progress"] == "furthest step of the expected path reached " \
                                     "(0 = 'Lead', 2 = 'Paid')"
    assert list(names) == encoder.feature_names_out_
