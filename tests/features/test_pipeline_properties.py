"""Leakage properties of the prefix feature pipeline, checked with hypothesis.

The brief's promise: a prefix's features use only what was known at its last event,
also for features drawn from other cases. So whatever happens strictly after a cut
time ``t`` (events changed, removed or added, in the prefix's own case or in any other
case) must leave every prefix ending at or before ``t`` exactly as it was. The logs are
small random canonical logs built directly, and slices of simulated logs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.log import canonicalize
from features.mapping import default_mapping
from features.pipeline import PrefixPipeline
from features.prefixes import KEY_COLUMNS, prepare_events, table_columns
from features.schema import (
    CANONICAL_KINDS,
    LABEL_ONLY_COLUMNS,
    ROW_COLUMN,
    TIMESTAMP_DTYPE,
)
from features.simulate import simulate_log
from tests.features.frames import canonical_columns

MAPPING = default_mapping()
ROLES = MAPPING.roles
ACTIVITIES = sorted(MAPPING.known_activities)
DECISIVE = ["Opportunity Won", "Opportunity Lost", "Invoice Created", "Payment Received"]
#: the outcome, invoice and payment events drive the labels and the cross-case facts
ACTIVITY_POOL = [*ACTIVITIES, *DECISIVE, *DECISIVE]
STAGES = [*ROLES.stage_order, "Closed Won", None]
T0 = pd.Timestamp("2024-01-01", tz="UTC")
HOUR = pd.Timedelta(hours=1)

POOLS: dict[str, list[object]] = {
    "resource": ["u1", "u2", "u3", None],
    "value": [1000.0, 2500.0, 40000.0, None],
    "currency": ["USD", "EUR"],
    "rep": ["R1", "R2", None],
    "region": ["North", "South", None],
    "account": ["A1", "A2", None],
    "lead_source": ["web", "referral", None],
    "product": ["Software", "Services"],
    "contract_type": ["standard", "non-standard"],
    "payment_terms_days": [30.0, 45.0, 60.0, None],
    "lost_reason": ["price", "competitor", None],
    "stage": STAGES,
    "discount_pct": [0.0, 5.0, 12.5, 20.0, None],
}
CASE_LEVEL = ("currency", "rep", "region", "account", "lead_source", "product", "contract_type",
              "payment_terms_days", "lost_reason")
EVENT_LEVEL = ("resource", "value", "stage", "discount_pct")
#: a fit costs ~0.4 s and a transform ~0.25 s, so each random log is cut twice and the
#: file stays well under a minute
SETTINGS = settings(max_examples=15, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: means are ratios of running sums, computed in a different order when the log
#: differs; 1e-9 is far below any real change (one second is 1.2e-5 days). The
#: bit-identical test below checks the exact case.
CLOSE = {"check_exact": False, "rtol": 1e-9, "atol": 1e-9}


# ------------------------------------------------------------------ building logs
def canonical_frame(rows: list[dict[str, object]],
                    end_activities: list[str] = ROLES.end_activities) -> pd.DataFrame:
    """Rows (dicts) -> a frame with every canonical column in its canonical dtype."""
    raw = pd.DataFrame(rows)
    out = canonical_columns(raw)
    out["payment_terms"] = pd.Series(
        [f"Net {d:g}" if pd.notna(d) else None for d in out["payment_terms_days"]], dtype="str")
    return canonical_order(out, end_activities)


def canonical_order(frame: pd.DataFrame,
                    end_activities: list[str] = ROLES.end_activities) -> pd.DataFrame:
    """Sorted by case, time and source row, and no event after a case's end event.

    That is what ``canonicalize`` hands over (it quarantines events after the end).
    """
    frame = frame.sort_values(["case_id", "timestamp", ROW_COLUMN], kind="stable")
    ends = frame.loc[frame["activity"].isin(end_activities)]
    if len(ends):
        case_end = frame["case_id"].map(ends.groupby("case_id")["timestamp"].min())
        frame = frame[~(frame["timestamp"] > case_end).to_numpy()]
    return frame.reset_index(drop=True)


def attribute_values(draw: st.DrawFn, columns: tuple[str, ...]) -> dict[str, object]:
    return {column: draw(st.sampled_from(POOLS[column])) for column in columns}


@st.composite
def canonical_logs(draw: st.DrawFn, max_cases: int = 5, max_events: int = 7) -> pd.DataFrame:
    """Small canonical logs: few cases, reps, regions and accounts; ties in time."""
    rows: list[dict[str, object]] = []
    for case in range(draw(st.integers(1, max_cases))):
        case_attrs = attribute_values(draw, CASE_LEVEL)
        time = T0 + HOUR * draw(st.integers(0, 24 * 40))
        for _ in range(draw(st.integers(1, max_events))):
            time = time + HOUR * draw(st.sampled_from([0, 1, 5, 24, 72, 24 * 20]))
            rows.append({"case_id": f"C{case}", "activity": draw(st.sampled_from(ACTIVITY_POOL)),
                         "timestamp": time, **case_attrs, **attribute_values(draw, EVENT_LEVEL)})
    return canonical_frame(rows)


@st.composite
def future_changes(draw: st.DrawFn, log: pd.DataFrame) -> tuple[pd.Timestamp, pd.DataFrame]:
    """A cut time t and a copy of ``log`` changed only strictly after t."""
    times = np.sort(log["timestamp"].unique())
    t = pd.Timestamp(times[draw(st.integers(0, len(times) - 1))])
    t = t + draw(st.sampled_from([pd.Timedelta(0), pd.Timedelta(0), pd.Timedelta(minutes=30)]))
    rows = log.to_dict("records")
    kept = []
    for row in rows:
        if row["timestamp"] <= t:
            kept.append(row)
            continue
        action = draw(st.sampled_from(["keep", "change", "drop"]))
        if action == "drop":
            continue
        if action == "change":
            columns = draw(st.sets(st.sampled_from([*CASE_LEVEL, *EVENT_LEVEL, "activity"]),
                                   min_size=1))
            for column in sorted(columns):
                pool = ACTIVITY_POOL if column == "activity" else POOLS[column]
                row[column] = draw(st.sampled_from(pool))
        kept.append(row)
    cases = sorted(log["case_id"].unique())
    next_row = int(log[ROW_COLUMN].max()) + 1
    for i in range(draw(st.integers(0, 4))):
        delay = draw(st.sampled_from([pd.Timedelta(seconds=1), HOUR, 24 * HOUR, 500 * HOUR]))
        kept.append({
            "case_id": draw(st.sampled_from([*cases, "NEW1", "NEW2"])),
            "activity": draw(st.sampled_from(ACTIVITY_POOL)),
            "timestamp": t + delay,
            **attribute_values(draw, CASE_LEVEL), **attribute_values(draw, EVENT_LEVEL),
            ROW_COLUMN: next_row + i,
        })
    return t, canonical_frame(kept)


# ------------------------------------------------------------------ assertions
def fitted(log: pd.DataFrame) -> PrefixPipeline:
    return PrefixPipeline(roles=ROLES, min_frequency=1).fit(log)


def prefixes_until(frame: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    upto = frame[frame["prefix_end"] <= t]
    return upto.set_index(["case_id", "prefix_len"]).sort_index()


def assert_past_unchanged(pipe: PrefixPipeline, original: pd.DataFrame,
                          modified: pd.DataFrame, t: pd.Timestamp,
                          before: pd.DataFrame | None = None, exact: bool = False) -> None:
    features = list(pipe.get_feature_names_out())
    before = pipe.transform(original) if before is None else before
    after = pipe.transform(modified)
    expected, found = prefixes_until(before, t), prefixes_until(after, t)
    assert found.index.equals(expected.index), "the prefixes ending by t differ"
    assert len(expected) == int((original["timestamp"] <= t).sum())
    assert_frames_equal(found[["prefix_end", *features]], expected[["prefix_end", *features]],
                        exact=exact)


def assert_frames_equal(found: pd.DataFrame, expected: pd.DataFrame, exact: bool = True) -> None:
    """``assert_frame_equal`` (~0.3 s on 70 columns), called only when a cheap check fails."""
    if not _same(found, expected, exact):
        pd.testing.assert_frame_equal(found, expected,
                                      **({"check_exact": True} if exact else CLOSE))
        raise AssertionError("frames differ in dtype or values")  # pragma: no cover


def _same(left: pd.DataFrame, right: pd.DataFrame, exact: bool) -> bool:
    if not (left.index.equals(right.index) and list(left.columns) == list(right.columns)):
        return False
    for column in left.columns:
        a, b = left[column], right[column]
        if a.dtype != b.dtype:
            return False
        if isinstance(a.dtype, pd.CategoricalDtype):
            same = np.array_equal(a.cat.codes.to_numpy(), b.cat.codes.to_numpy())
        elif pd.api.types.is_float_dtype(a.dtype):
            x, y = a.to_numpy(), b.to_numpy()
            same = (np.array_equal(x, y, equal_nan=True) if exact else
                    np.allclose(x, y, rtol=CLOSE["rtol"], atol=CLOSE["atol"], equal_nan=True))
        else:
            same = a.equals(b)
        if not same:
            return False
    return True


# ------------------------------------------------------------------ the strategy
@given(canonical_logs())
@settings(max_examples=10, deadline=None, derandomize=True)
def test_strategy_builds_canonical_logs(log: pd.DataFrame) -> None:
    assert list(log.columns) == [*CANONICAL_KINDS, ROW_COLUMN]
    for column, kind in CANONICAL_KINDS.items():
        expected = {"time": TIMESTAMP_DTYPE, "number": "float64"}.get(kind, "str")
        assert str(log[column].dtype) == expected, column
    assert str(log[ROW_COLUMN].dtype) == "int64"
    assert not log["case_id"].isna().any() and not log["activity"].isna().any()
    assert not (log["rep"] == "None").any()


# ------------------------------------------------------------------ leakage
@given(st.data())
@SETTINGS
def test_changes_after_t_never_change_earlier_prefixes(data: st.DataObject) -> None:
    log = data.draw(canonical_logs(), label="log")
    snapshot = log.copy(deep=True)
    pipe = fitted(log)
    before = pipe.transform(log)
    for cut in range(2):
        t, modified = data.draw(future_changes(log), label=f"modified {cut}")
        assert_past_unchanged(pipe, log, modified, t, before=before)
    pd.testing.assert_frame_equal(log, snapshot)


@lru_cache(maxsize=2)
def simulated(seed: int) -> tuple[pd.DataFrame, PrefixPipeline, pd.DataFrame]:
    """A canonical simulated log, the pipeline fitted on it, and its prefix frame."""
    events = canonicalize(simulate_log(n_cases=300, seed=seed)[0], MAPPING).events
    pipe = fitted(events)
    return events, pipe, pipe.transform(events)


def change_future(events: pd.DataFrame, t: pd.Timestamp, rng: np.random.Generator,
                  p_change: float, p_drop: float, n_add: int) -> pd.DataFrame:
    """Change, drop and add events strictly after t (vectorised, for simulated logs)."""
    frame = events.copy()
    after = (frame["timestamp"] > t).to_numpy()
    n = len(frame)
    change = after & (rng.random(n) < p_change)
    reps = [*frame["rep"].dropna().unique(), "Rep NEW"]
    accounts = [*frame["account"].dropna().unique()[:20], "ACC-NEW"]
    replacements = {
        "activity": ACTIVITY_POOL, "rep": reps, "account": accounts,
        "region": ["North America", "EMEA", "Nowhere"], "stage": STAGES[:-1],
        "payment_terms_days": [15.0, 30.0, 90.0], "discount_pct": [0.0, 35.0],
        "value": [1.0, 1e6], "resource": ["someone", "Rep 01"], "lost_reason": ["price"],
    }
    for column, pool in replacements.items():
        which = change & (rng.random(n) < 0.5)
        picked = rng.choice(np.asarray(pool, dtype=object), size=int(which.sum()))
        frame.loc[which, column] = pd.Series(picked, index=frame.index[which]).astype(
            frame[column].dtype)
    frame = frame[~(after & (rng.random(n) < p_drop))]
    if n_add:
        added = events.iloc[rng.integers(0, n, size=n_add)].copy()
        # mostly cases running at t: their outcome, end and payment move the other
        # cases' as-of facts (win rate, open workload, payment habits)
        started = events.groupby("case_id")["timestamp"].min() <= t
        ended = events.loc[events["activity"].isin(ROLES.end_activities)
                           & (events["timestamp"] <= t), "case_id"].unique()
        running = started.index[started & ~started.index.isin(ended)]
        cases = np.asarray([*running, *running, *running, *events["case_id"].unique(), "NEW-1"],
                           dtype=object)
        added["case_id"] = pd.Series(rng.choice(cases, n_add), index=added.index, dtype="str")
        added["activity"] = pd.Series(rng.choice(np.asarray(DECISIVE, dtype=object), n_add),
                                      index=added.index, dtype="str")
        seconds = rng.integers(1, 60 * 86400, size=n_add)
        added["timestamp"] = t + pd.to_timedelta(seconds, unit="s")
        added[ROW_COLUMN] = np.arange(n_add, dtype="int64") + int(events[ROW_COLUMN].max()) + 1
        frame = pd.concat([frame, added], ignore_index=True)
    return canonical_order(frame)


@given(seed=st.sampled_from([11, 12]), quantile=st.integers(1, 9),
       rng_seed=st.integers(0, 2**32 - 1), p_change=st.sampled_from([0.0, 0.3, 1.0]),
       p_drop=st.sampled_from([0.0, 0.2, 0.9]), n_add=st.integers(0, 60))
@settings(max_examples=12, deadline=None, derandomize=True)
def test_simulated_log_changes_after_t_never_change_earlier_prefixes(
        seed: int, quantile: int, rng_seed: int, p_change: float, p_drop: float,
        n_add: int) -> None:
    events, pipe, before = simulated(seed)
    t = events["timestamp"].quantile(quantile / 10)
    modified = change_future(events, t, np.random.default_rng(rng_seed), p_change, p_drop,
                             n_add)
    assert_past_unchanged(pipe, events, modified, t, before=before)


def test_simulated_cut_at_t_gives_the_same_early_prefixes() -> None:
    """The log as it was at t (everything later removed) scores early prefixes alike."""
    events, pipe, before = simulated(11)
    t = events["timestamp"].quantile(0.5)
    assert_past_unchanged(pipe, events, events[events["timestamp"] <= t], t, before=before)
    # the cut is not vacuous: cross-case features vary over these prefixes
    early = prefixes_until(before, t)
    assert early["rep_win_rate"].nunique() > 5
    assert early["account_mean_payment_delay_days"].notna().sum() > 10


def test_simulated_cut_at_t_gives_bit_identical_early_prefixes() -> None:
    events, pipe, before = simulated(11)
    t = events["timestamp"].quantile(0.5)
    assert_past_unchanged(pipe, events, events[events["timestamp"] <= t], t, before=before,
                          exact=True)


# ------------------------------------------------------------------ known leaks
def row(case: str, activity: str, day: str, **attrs: object) -> dict[str, object]:
    return {"case_id": case, "activity": activity, "timestamp": pd.Timestamp(day, tz="UTC"),
            **attrs}


def test_last_of_won_lost_later_decision_does_not_rewrite_earlier_win_rate() -> None:
    roles = ROLES.model_copy(update={"outcome_rule": "last_of_won_lost"})
    known = [row("A", "Lead Captured", "2024-01-01", rep="R"),
             row("A", "Opportunity Won", "2024-01-05", rep="R"),
             row("B", "Lead Captured", "2024-01-10", rep="R")]
    original = canonical_frame(known)
    modified = canonical_frame([*known, row("A", "Opportunity Lost", "2024-02-01", rep="R")])
    pipe = PrefixPipeline(roles=roles, min_frequency=1).fit(original)
    before = pipe.transform(original)
    # what was known on 2024-01-10: A had been won
    assert before["rep_win_rate"].tolist()[-1] == 1.0
    assert_past_unchanged(pipe, original, modified, pd.Timestamp("2024-01-10", tz="UTC"),
                          before=before)


def test_terms_changed_after_the_payment_do_not_rewrite_earlier_delays() -> None:
    roles = ROLES.model_copy(update={"case_end": []})
    paid = [row("A", "Lead Captured", "2024-01-01", account="X", payment_terms_days=30.0),
            row("A", "Opportunity Won", "2024-01-02", account="X", payment_terms_days=30.0),
            row("A", "Invoice Created", "2024-01-03", account="X", payment_terms_days=30.0),
            row("A", "Payment Received", "2024-02-12", account="X", payment_terms_days=30.0),
            row("B", "Lead Captured", "2024-03-01", account="X")]
    original = canonical_frame(paid, end_activities=[])
    modified = canonical_frame(
        [*paid, row("A", "Invoice Corrected", "2024-04-01", account="X",
                    payment_terms_days=60.0)], end_activities=[])
    pipe = PrefixPipeline(roles=roles, min_frequency=1).fit(original)
    before = pipe.transform(original)
    # known on 2024-03-01: A paid 10 days after its due date (2024-02-02)
    assert before["account_mean_payment_delay_days"].tolist()[-1] == 10.0
    assert_past_unchanged(pipe, original, modified, pd.Timestamp("2024-03-01", tz="UTC"),
                          before=before)


# ------------------------------------------------------------------ invariances
@given(st.data())
@settings(max_examples=6, deadline=None, derandomize=True)
def test_row_order_and_caller_frame_do_not_matter(data: st.DataObject) -> None:
    log = data.draw(canonical_logs(), label="log")
    order = data.draw(st.permutations(range(len(log))), label="order")
    shuffled = log.iloc[list(order)].reset_index(drop=True)
    snapshot = shuffled.copy(deep=True)
    pipe = fitted(log)
    assert_frames_equal(pipe.transform(shuffled), pipe.transform(log))
    assert_frames_equal(pipe.labels(shuffled), pipe.labels(log))
    pd.testing.assert_frame_equal(shuffled, snapshot)


@given(st.data())
@settings(max_examples=8, deadline=None, derandomize=True)
def test_a_log_given_as_its_columns_encodes_as_its_frame(data: st.DataObject) -> None:
    """The API encodes a request from the reader's arrays (``EventLog.columns``), never
    building a frame: in or out of order, those must give the frame's every bit."""
    log = data.draw(canonical_logs(), label="log")
    order = data.draw(st.permutations(range(len(log))), label="order")
    pipe = fitted(log)
    for frame in (log, log.iloc[list(order)].reset_index(drop=True)):
        columns = table_columns(frame)
        prepared = prepare_events(columns)
        assert_frames_equal(prepared[list(log.columns)], log)  # the log is in canonical order
        assert_frames_equal(prepared, prepare_events(frame))
        assert_frames_equal(pipe.encode(columns, last_only=True).frame(),
                            pipe.transform(frame, last_only=True))
        assert_frames_equal(pipe.encode(columns).frame(), pipe.transform(frame))
        # what the API reads besides the features: the last given attribute values
        assert (pd.Series(pipe.encode(columns).last_given("rep")).fillna("-").tolist()
                == pd.Series(pipe.encode(frame).last_given("rep")).fillna("-").tolist())


def test_simulated_shuffle_refit_and_caller_frame_untouched() -> None:
    events, pipe, before = simulated(12)
    shuffled = events.sample(frac=1.0, random_state=3)
    snapshot = shuffled.copy(deep=True)
    pd.testing.assert_frame_equal(pipe.transform(shuffled), before, check_exact=True)
    pd.testing.assert_frame_equal(pipe.labels(shuffled), pipe.labels(events), check_exact=True)
    refitted = fitted(shuffled)
    assert refitted.schema_ == pipe.schema_
    pd.testing.assert_frame_equal(refitted.transform(shuffled), before, check_exact=True)
    pd.testing.assert_frame_equal(shuffled, snapshot)


# ------------------------------------------------------------------ labels stay out
def test_no_feature_is_named_after_a_label_only_column() -> None:
    _, pipe, before = simulated(11)
    names = list(pipe.get_feature_names_out())
    assert names == list(before.columns[len(KEY_COLUMNS) + 1:])
    for label in LABEL_ONLY_COLUMNS:
        assert [n for n in names if label in n] == []
        assert label not in before.columns


@given(st.data())
@settings(max_examples=5, deadline=None, derandomize=True)
def test_lost_reason_changes_no_feature(data: st.DataObject) -> None:
    log = data.draw(canonical_logs(), label="log")
    reasons = data.draw(st.lists(st.sampled_from(["price", "timing", "x", None]),
                                 min_size=len(log), max_size=len(log)), label="reasons")
    relabelled = log.assign(lost_reason=pd.Series(reasons, index=log.index, dtype="str"))
    pipe = fitted(log)
    assert_frames_equal(pipe.transform(relabelled), pipe.transform(log))


def test_lost_reason_of_simulated_log_changes_no_feature() -> None:
    events, pipe, before = simulated(11)
    assert events["lost_reason"].notna().sum() > 10  # the simulator does fill it
    scrambled = events.assign(lost_reason=events["lost_reason"].sample(
        frac=1.0, random_state=1).to_numpy())
    scrambled.loc[scrambled.index[::3], "lost_reason"] = "leaked"
    pd.testing.assert_frame_equal(pipe.transform(scrambled), before, check_exact=True)
    refitted = fitted(scrambled)
    assert refitted.schema_ == pipe.schema_
    pd.testing.assert_frame_equal(refitted.transform(scrambled), before, check_exact=True)


@pytest.mark.parametrize("column", LABEL_ONLY_COLUMNS)
def test_pipeline_needs_no_label_only_column(column: str) -> None:
    events, _, _ = simulated(12)
    small = events[events["case_id"].isin(events["case_id"].unique()[:30])]
    without = fitted(small.drop(columns=column))
    pd.testing.assert_frame_equal(without.transform(small.drop(columns=column)),
                                  fitted(small).transform(small), check_exact=True)


@given(canonical_logs())
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
def test_a_case_scored_alone_gets_its_own_features_as_in_the_whole_log(
        log: pd.DataFrame) -> None:
    """The API scores one case at a time (the one-case path of ``by_case``); every feature
    but the cross-case ones, which see other cases, must equal the whole log's, bit for bit.
    """
    pipe = fitted(log)
    cross_case = {n for enc in pipe.encoders_ if type(enc).__name__ == "CrossCaseEncoder"
                  for n in enc.feature_names_out_}
    own = [n for n in pipe.get_feature_names_out() if n not in cross_case]
    whole = pipe.transform(log).set_index(["case_id", "prefix_len"])
    for case in log["case_id"].unique():
        alone = pipe.transform(log[log["case_id"] == case]).set_index(["case_id", "prefix_len"])
        assert_frames_equal(alone[["prefix_end", "case_start", *own]],
                            whole.loc[alone.index, ["prefix_end", "case_start", *own]])


@given(canonical_logs(), canonical_logs())
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_cases_scored_alone_in_one_pass_get_what_each_gets_alone(
        history: pd.DataFrame, given_log: pd.DataFrame) -> None:
    """Cases encoded in one pass with ``each_case_alone`` (the API's concurrent requests)
    must not see each other: each case's features, cross-case ones included, must be bit
    for bit those of the case encoded alone. Given cases share reps, regions and
    accounts with each other and the history, and may be cases the history holds (one
    may even be all of it: it must not lose the bits it gets alone)."""
    pipe = fitted(history)
    together = pipe.encode(given_log, each_case_alone=True).frame().set_index(
        ["case_id", "prefix_len"])
    for case in given_log["case_id"].unique():
        alone = pipe.transform(given_log[given_log["case_id"] == case])
        alone = alone.set_index(["case_id", "prefix_len"])
        assert_frames_equal(together.loc[alone.index], alone)


@given(canonical_logs())
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_one_case_alone_or_not_is_encoded_alike(log: pd.DataFrame) -> None:
    """A single case gets the same bits whether or not it is scored alone: the API
    answers a request alone or in company with one rule."""
    pipe = fitted(log)
    case = log[log["case_id"] == log["case_id"].iloc[0]]
    assert_frames_equal(pipe.encode(case, each_case_alone=True).frame(),
                        pipe.encode(case).frame())


@given(categories=st.lists(st.text(max_size=3), min_size=1, max_size=60, unique=True),
       picks=st.data())
@settings(max_examples=60, deadline=None)
def test_decoding_a_few_codes_picks_what_the_category_table_does(
        categories: list[str], picks: st.DataObject) -> None:
    """A request decodes a handful of codes by picking them; a batch through the table
    of every category. Both must give the same objects, NaN for the missing code."""
    from features.prefixes import decoded

    codes = np.asarray(picks.draw(st.lists(st.integers(-1, len(categories) - 1),
                                           max_size=120)), dtype=np.int64)
    table = np.append(np.asarray(categories, dtype=object), np.nan)[codes]
    got = decoded(codes, tuple(categories))
    assert got.dtype == object and got.shape == table.shape
    assert [v if v == v else "<nan>" for v in got.tolist()] == [
        v if v == v else "<nan>" for v in table.tolist()]


@given(picks=st.lists(st.tuples(st.integers(0, 299), st.integers(1, 12)), min_size=1,
                      max_size=4, unique_by=lambda pick: pick[0]))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_running_cases_scored_against_the_fitted_history_get_the_logs_features(
        picks: list[tuple[int, int]]) -> None:
    """What the API does: running cases of the fitted log arrive as their first k events,
    scored alone in one pass against the stored history (their stored facts replaced by
    the prefix's). Each must get the features the whole log gives that prefix; sums of
    days may differ in the last bits only (they are added in another order)."""
    events, pipe, before = simulated(11)
    cases = pd.unique(events["case_id"])
    chosen = {str(cases[i]): k for i, k in picks}
    given = pd.concat([events[events["case_id"] == case].head(k)
                       for case, k in chosen.items()], ignore_index=True)
    encoded = pipe.encode(given, last_only=True, each_case_alone=True)
    got = encoded.frame().set_index(["case_id", "prefix_len"])
    expected = before.set_index(["case_id", "prefix_len"]).loc[got.index, got.columns]
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12, atol=1e-9)


ABSENCE_ROLES = ROLES.model_copy(update={"outcome_rule": "won_else_lost",
                                         "lost_after_days": 15.0})


@given(st.data())
@SETTINGS
def test_verdicts_by_absence_never_leak_into_earlier_prefixes(data: st.DataObject) -> None:
    """Under 'won_else_lost' a loss by silence is known only once the silence has
    lasted: the reps' and accounts' win rates as of t never move when anything after t
    changes (a late event in a case already lost by silence included)."""
    log = data.draw(canonical_logs(), label="log")
    pipe = PrefixPipeline(roles=ABSENCE_ROLES, min_frequency=1).fit(log)
    before = pipe.transform(log)
    t, modified = data.draw(future_changes(log), label="modified")
    assert_past_unchanged(pipe, log, modified, t, before=before)
