"""Labels of the three targets, per prefix, and the temporal splits.

The label log is written inline; every expected value is worked out in the comments
from the domain brief's definitions (won/lost, remaining time to the end event,
payment delay from the due date).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.labels import build_labels
from features.log import canonicalize
from features.mapping import default_mapping
from features.pipeline import PrefixPipeline
from features.prefixes import prepare_events
from features.simulate import simulate_log
from features.split import (
    TimeOrderedCaseSplit,
    case_spans,
    case_starts_sorted,
    horizon_of,
    temporal_split,
)
from tests.features.frames import canonical_columns

ROLES = default_mapping().roles
NAN = np.nan
T, F = True, False


def make_log(rows: list[tuple]) -> pd.DataFrame:
    """(case, activity, time[, payment_terms_days]) tuples -> a canonical log."""
    raw = pd.DataFrame([dict(zip(["case_id", "activity", "timestamp", "payment_terms_days"], r,
                                 strict=False)) for r in rows])
    return canonical_columns(raw)


LOG = make_log([
    # W: won 01-11, invoiced 01-21 with Net 30 (due 02-20), paid 02-15: 5 days early
    ("W", "Lead Captured", "2024-01-01", 30.0),
    ("W", "Opportunity Won", "2024-01-11", 30.0),
    ("W", "Invoice Created", "2024-01-21", 30.0),
    ("W", "Invoice Sent", "2024-02-10", 30.0),
    ("W", "Payment Received", "2024-02-15", 30.0),
    # L: lost 01-12; its stray invoice never makes a payment label
    ("L", "Lead Captured", "2024-01-02"),
    ("L", "Invoice Created", "2024-01-05"),
    ("L", "Opportunity Lost", "2024-01-12"),
    # O: undecided and still open
    ("O", "Lead Captured", "2024-01-03"),
    ("O", "Meeting Held", "2024-01-08"),
    # U: won, invoiced 01-10 with Net 60 (due 03-10), not paid yet
    ("U", "Lead Captured", "2024-01-04", 60.0),
    ("U", "Opportunity Won", "2024-01-06", 60.0),
    ("U", "Invoice Created", "2024-01-10", 60.0),
    # N: won, no terms known: the delay runs from the invoice (01-05) to payment (01-25)
    ("N", "Lead Captured", "2024-01-01T12:00"),
    ("N", "Opportunity Won", "2024-01-02"),
    ("N", "Invoice Created", "2024-01-05"),
    ("N", "Payment Received", "2024-01-25"),
])
EXTRACTION = pd.Timestamp("2024-03-20", tz="UTC")


def labels(log: pd.DataFrame = LOG, roles=ROLES, extraction=EXTRACTION) -> pd.DataFrame:
    return build_labels(prepare_events(log), roles, extraction).set_index(
        ["case_id", "prefix_len"])


def column(frame: pd.DataFrame, case: str, name: str) -> list:
    return frame.loc[case, name].tolist()


def test_outcome_labels_only_before_the_outcome_event() -> None:
    out = labels()
    assert column(out, "W", "won") == [1.0] * 5
    assert column(out, "W", "outcome_usable") == [T, F, F, F, F]
    assert column(out, "L", "won") == [0.0] * 3
    assert column(out, "L", "outcome_usable") == [T, T, F]
    assert np.isnan(column(out, "O", "won")).all()
    assert column(out, "O", "outcome_usable") == [F, F]
    assert column(out, "U", "outcome_usable") == [T, F, F]


def test_remaining_time_to_the_end_event_for_completed_cases() -> None:
    out = labels()
    # W ends with its payment on 02-15, L with its loss on 01-12, N with payment 01-25
    assert column(out, "W", "remaining_days") == [45, 35, 25, 5, 0]
    assert column(out, "W", "remaining_usable") == [T, T, T, T, F]
    assert column(out, "L", "remaining_days") == [10, 7, 0]
    assert column(out, "L", "remaining_usable") == [T, T, F]
    assert column(out, "N", "remaining_days") == [23.5, 23, 20, 0]
    for case in "WLN":
        assert not any(column(out, case, "remaining_censored"))


def test_remaining_time_of_open_cases_is_censored_at_extraction() -> None:
    out = labels()
    assert column(out, "O", "remaining_days") == [77, 72]  # 03-20 - 01-03, - 01-08
    assert column(out, "U", "remaining_days") == [76, 74, 70]  # won but never paid: open
    for case in "OU":
        assert all(column(out, case, "remaining_censored"))
        assert all(column(out, case, "remaining_usable"))
    by_default = labels(extraction=None)  # the log's last event, W's payment on 02-15
    assert column(by_default, "O", "remaining_days") == [43, 38]
    assert column(by_default, "W", "remaining_days") == [45, 35, 25, 5, 0]


def test_payment_delay_from_due_date_usable_before_payment_and_before_invoice() -> None:
    out = labels()
    assert column(out, "W", "payment_delay_days") == [-5.0] * 5  # early: negative
    assert column(out, "W", "payment_usable") == [T, T, T, T, F]  # k=1, 2: no invoice yet
    assert column(out, "N", "payment_delay_days") == [20.0] * 4  # no terms: from invoice
    assert column(out, "N", "payment_usable") == [T, T, T, F]
    for case in "WN":
        assert not any(column(out, case, "payment_censored"))
    for case in "LO":  # lost (stray invoice) and never invoiced: no payment label
        assert np.isnan(column(out, case, "payment_delay_days")).all()
        assert not any(column(out, case, "payment_usable"))
        assert not any(column(out, case, "payment_censored"))


def test_unpaid_invoice_is_censored_with_its_lateness_at_extraction() -> None:
    out = labels()
    assert column(out, "U", "payment_delay_days") == [10.0] * 3  # 03-20 - due 03-10
    assert all(column(out, "U", "payment_censored")) and all(column(out, "U", "payment_usable"))
    early = labels(extraction=None)  # 02-15 is 24 days before the due date
    assert column(early, "U", "payment_delay_days") == [-24.0] * 3


def test_labels_are_one_row_per_prefix_in_prepared_order() -> None:
    prepared = prepare_events(LOG.sample(frac=1.0, random_state=0))
    out = build_labels(prepared, ROLES, EXTRACTION)
    assert list(out.columns) == [
        "case_id", "prefix_len", "prefix_end", "won", "outcome_usable", "remaining_days",
        "remaining_censored", "remaining_usable", "payment_delay_days", "payment_censored",
        "payment_usable"]
    pd.testing.assert_frame_equal(out[["case_id", "prefix_len", "prefix_end"]],
                                  prepared[["case_id", "prefix_len", "prefix_end"]])


DECISIONS = make_log([
    ("M", "Lead Captured", "2024-01-01"),
    ("M", "Opportunity Won", "2024-01-02"),
    ("M", "Opportunity Lost", "2024-01-03"),
    ("M", "Opportunity Won", "2024-01-04"),
    ("K", "Lead Captured", "2024-01-01"),
    ("K", "Opportunity Won", "2024-01-02"),
    ("K", "Opportunity Lost", "2024-01-05"),
])


@pytest.mark.parametrize(("rule", "m_usable", "k_won", "k_usable"), [
    ("any", [T, F, F, F], 1.0, [T, F, F]),  # the first decisive event decides
    ("last_of_won_lost", [T, T, T, F], 0.0, [T, T, F]),  # the last one does
])
def test_outcome_rule(rule: str, m_usable: list[bool], k_won: float,
                      k_usable: list[bool]) -> None:
    roles = ROLES.model_copy(update={"outcome_rule": rule, "case_end": []})
    out = labels(DECISIONS, roles)
    assert column(out, "M", "won") == [1.0] * 4
    assert column(out, "M", "outcome_usable") == m_usable
    assert column(out, "K", "won") == [k_won] * 3
    assert column(out, "K", "outcome_usable") == k_usable
    # no end activities: a case is complete at its last event
    assert column(out, "K", "remaining_days") == [4, 3, 0]
    assert not any(column(out, "K", "remaining_censored"))


def test_pipeline_labels_align_with_its_prefix_selection() -> None:
    pipe = PrefixPipeline(roles=ROLES, min_frequency=1, max_prefix_len=3).fit(LOG)
    frame = pipe.transform(LOG)
    out = pipe.labels(LOG, EXTRACTION)
    assert out["prefix_len"].max() == 3 and len(out) == 14
    pd.testing.assert_frame_equal(out[["case_id", "prefix_len", "prefix_end"]],
                                  frame[["case_id", "prefix_len", "prefix_end"]])
    expected = labels().reset_index()
    expected = expected[expected["prefix_len"] <= 3].reset_index(drop=True)
    pd.testing.assert_frame_equal(out, expected[out.columns])


# ------------------------------------------------------------------ temporal split
@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return canonicalize(simulate_log(n_cases=300, seed=5)[0], default_mapping()).events


def starts_of(frame: pd.DataFrame) -> pd.Series:
    return frame.groupby("case_id")["timestamp"].min()


def test_temporal_split_trains_strictly_before_the_split(events: pd.DataFrame) -> None:
    snapshot = events.copy(deep=True)
    split = temporal_split(events, test_fraction=0.2)
    train_starts, test_starts = starts_of(split.train), starts_of(split.test)
    assert split.train["timestamp"].max() < split.split_time
    assert test_starts.min() == split.split_time
    assert (test_starts >= split.split_time).all()
    assert train_starts.max() < test_starts.min()  # cases ordered by start
    assert len(test_starts) == 60 and set(train_starts.index).isdisjoint(test_starts.index)
    # the test cases are whole; training holds exactly the earlier events of the others
    in_test = events["case_id"].isin(test_starts.index)
    pd.testing.assert_frame_equal(split.test, events[in_test])
    pd.testing.assert_frame_equal(
        split.train, events[~in_test & (events["timestamp"] < split.split_time)])
    ordered = case_starts_sorted(events)
    assert list(ordered.index[-60:]) == sorted(test_starts.index, key=lambda c: (
        test_starts[c], c))
    assert ordered.is_monotonic_increasing
    pd.testing.assert_frame_equal(events, snapshot)


def test_temporal_split_leaves_out_cases_too_recent_to_finish(events: pd.DataFrame) -> None:
    horizon = pd.Timedelta(days=120)
    split = temporal_split(events, test_fraction=0.25, horizon=horizon)
    starts = starts_of(events)
    recent = set(starts.index[starts > events["timestamp"].max() - horizon])
    assert recent and set(split.too_recent) == recent
    used = set(split.train["case_id"]) | set(split.test["case_id"])
    assert used.isdisjoint(recent)
    assert used == set(starts.index) - recent  # every other case trains or tests
    assert split.train["timestamp"].max() < split.split_time <= starts_of(split.test).min()


def test_temporal_split_with_tied_starts_drops_training_cases_at_the_split() -> None:
    log = make_log([
        ("c1", "Lead Captured", "2024-01-01"), ("c1", "Opportunity Won", "2024-01-03"),
        ("c2", "Lead Captured", "2024-01-02"), ("c2", "Meeting Held", "2024-01-09"),
        ("c3", "Lead Captured", "2024-01-02"), ("c4", "Lead Captured", "2024-01-05"),
    ])
    split = temporal_split(log, test_fraction=0.5)
    # by (start, case id): c1, c2, c3, c4; split at c3's start, which c2 shares
    assert split.split_time == pd.Timestamp("2024-01-02", tz="UTC")
    assert sorted(split.test["case_id"].unique()) == ["c3", "c4"]
    assert split.train["case_id"].tolist() == ["c1"]  # c1's 01-03 win is cut too


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_temporal_split_refuses_bad_fractions(fraction: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        temporal_split(LOG, test_fraction=fraction)


def test_temporal_split_needs_two_cases() -> None:
    with pytest.raises(ValueError, match="two cases"):
        temporal_split(LOG[LOG["case_id"] == "W"])


# ------------------------------------------------------------------ CV folds
def naive_times(frame: pd.DataFrame) -> pd.DataFrame:
    """The same frame with tz-naive (UTC) times: the folds work on either kind."""
    return frame.assign(prefix_end=frame["prefix_end"].dt.tz_localize(None),
                        case_start=frame["case_start"].dt.tz_localize(None))


def test_time_ordered_folds_accept_the_pipeline_prefix_frame() -> None:
    log = LOG[LOG["case_id"].isin(["W", "L", "O", "U"])]
    frame = PrefixPipeline(roles=ROLES, min_frequency=1).fit(log).transform(log)
    [(train, valid)] = list(TimeOrderedCaseSplit(n_splits=1).split(frame))
    # by start: W 01-01, L 01-02 | O 01-03, U 01-04; train = W, L prefixes before 01-03
    assert frame.iloc[train][["case_id", "prefix_len"]].values.tolist() == [["L", 1], ["W", 1]]
    assert sorted(set(frame.iloc[valid]["case_id"])) == ["O", "U"]


def test_time_ordered_folds_train_before_each_validation_block(events: pd.DataFrame) -> None:
    frame = naive_times(prepare_events(events))
    cv = TimeOrderedCaseSplit(n_splits=3)
    assert cv.get_n_splits() == 3
    folds = list(cv.split(frame))
    assert len(folds) == 3
    order = frame.groupby("case_id")["case_start"].first().reset_index().sort_values(
        ["case_start", "case_id"])["case_id"].tolist()
    seen_valid: set[str] = set()
    previous_train = np.array([], dtype=int)
    for i, (train, valid) in enumerate(folds):
        tr, va = frame.iloc[train], frame.iloc[valid]
        first_valid_start = va["case_start"].min()
        assert len(tr) > 0 and len(va) > 0
        assert (tr["prefix_end"] < first_valid_start).all()
        assert tr["case_start"].max() < first_valid_start
        valid_cases = set(va["case_id"])
        assert valid_cases == set(order[75 * (i + 1): 75 * (i + 2)])  # the next 75 cases
        assert len(va) == frame["case_id"].isin(valid_cases).sum()  # all their prefixes
        assert valid_cases.isdisjoint(seen_valid) and valid_cases.isdisjoint(tr["case_id"])
        seen_valid |= valid_cases
        earlier = frame["case_id"].isin(order[: 75 * (i + 1)])
        expected = np.flatnonzero(earlier & (frame["prefix_end"] < first_valid_start))
        np.testing.assert_array_equal(train, expected)
        assert set(previous_train) <= set(train)
        previous_train = train
    assert seen_valid == set(order[75:])


def test_time_ordered_folds_drop_training_cases_tied_with_the_block_start() -> None:
    frame = naive_times(prepare_events(make_log([
        ("c1", "Lead Captured", "2024-01-01"), ("c1", "Meeting Held", "2024-01-04"),
        ("c2", "Lead Captured", "2024-01-02"), ("c3", "Lead Captured", "2024-01-02"),
        ("c4", "Lead Captured", "2024-01-03"),
    ])))
    [(train, valid)] = list(TimeOrderedCaseSplit(n_splits=1).split(frame))
    # blocks [c1, c2] and [c3, c4]: c2 starts with c3, c1's second event is later
    assert frame.iloc[train][["case_id", "prefix_len"]].values.tolist() == [["c1", 1]]
    assert sorted(frame.iloc[valid]["case_id"]) == ["c3", "c4"]


def test_time_ordered_split_needs_one_split() -> None:
    with pytest.raises(ValueError, match="n_splits"):
        TimeOrderedCaseSplit(n_splits=0)


def test_the_horizon_waits_for_slow_outcomes_when_no_activity_ends_a_case() -> None:
    """Wins come 10 days after the start, losses 200 days: without an end activity the
    horizon must still cover the losses, or the latest cases would be judged on their
    quick wins alone (every recent decided case a win)."""
    day = pd.Timedelta(days=1)
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    rows = []
    for i in range(400):
        start = t0 + i * day
        rows.append((f"c{i:03d}", "Start", start))
        won = i % 2 == 0
        decided = start + (10 if won else 200) * day
        if decided <= t0 + 399 * day:  # the extraction: later outcomes are not in the log
            rows.append((f"c{i:03d}", "Won" if won else "Lost", decided))
    events = pd.DataFrame(rows, columns=["case_id", "activity", "timestamp"])
    spans = case_spans(events, [], ["Won", "Lost"])
    assert spans["end"].isna().all() and spans["decided"].notna().sum() == 195 + 100
    horizon = horizon_of(spans)
    assert horizon is not None and 199 * day <= horizon <= 200 * day
    # with the horizon, every case old enough to judge is decided: no quick-wins-only tail
    old_enough = spans["start"] <= events["timestamp"].max() - horizon
    assert spans.loc[old_enough, "decided"].notna().all()
    assert horizon_of(spans.assign(decided=spans["end"])) is None  # the end alone: none
