"""Tests of the Lead-to-Cash simulator: log invariants, designed effects, oracle calibration.

The effects are asserted with wide margins so a retuned simulator only fails when an
effect vanishes or flips, not when it moves a little.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from features.simulate import (
    ACTIVITIES,
    EVENT_COLUMNS,
    LOST_REASONS,
    SALES_STAGES,
    STAGES,
    TRUTH_COLUMNS,
    simulate_log,
)

N_CASES = 4000
SEED = 7
END_ACTIVITIES = ("Payment Received", "Opportunity Lost")
STR_COLUMNS = [
    c for c in EVENT_COLUMNS if c not in ("event_time", "amount", "discount_pct")
]


@pytest.fixture(scope="module")
def sim() -> tuple[pd.DataFrame, pd.DataFrame]:
    return simulate_log(N_CASES, SEED)


@pytest.fixture(scope="module")
def events(sim: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    return sim[0]


@pytest.fixture(scope="module")
def truth(sim: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    return sim[1]


@pytest.fixture(scope="module")
def cases(events: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """One row per case: case attributes from the log joined to the truth."""
    attrs = events.drop_duplicates("opportunity_id").set_index("opportunity_id")
    per_case = truth.set_index("opportunity_id").join(
        attrs[["owner", "region", "account", "lead_source", "product_line", "currency"]]
    )
    per_case["quotes"] = (
        events[events["activity"] == "Quote Issued"].groupby("opportunity_id").size()
    ).reindex(per_case.index, fill_value=0)
    per_case["start"] = events.groupby("opportunity_id")["event_time"].min()
    return per_case


# --- determinism and schema ---------------------------------------------------------------


def test_same_seed_gives_identical_frames() -> None:
    ev1, tr1 = simulate_log(1500, 3)
    ev2, tr2 = simulate_log(1500, 3)
    pd.testing.assert_frame_equal(ev1, ev2)
    pd.testing.assert_frame_equal(tr1, tr2)


def test_different_seed_gives_different_frames() -> None:
    ev1, tr1 = simulate_log(1500, 3)
    ev2, tr2 = simulate_log(1500, 4)
    assert not ev1.equals(ev2)
    assert not np.allclose(tr1["p_win"], tr2["p_win"])


def test_event_schema(events: pd.DataFrame) -> None:
    assert tuple(events.columns) == EVENT_COLUMNS
    assert isinstance(events.index, pd.RangeIndex) and events.index.start == 0
    for column in STR_COLUMNS:
        assert pd.api.types.is_string_dtype(events[column]), column
        assert events[column].dtype == "str", column
    assert isinstance(events["event_time"].dtype, pd.DatetimeTZDtype)
    assert str(events["event_time"].dt.tz) == "UTC"
    assert (events["event_time"].dt.microsecond == 0).all()
    assert events["amount"].dtype == "float64" and (events["amount"] > 0).all()
    assert events["discount_pct"].dtype == "float64"
    required = [c for c in EVENT_COLUMNS if c not in ("discount_pct", "lost_reason")]
    assert not events[required].isna().any().any()
    assert set(events["activity"]) <= set(ACTIVITIES)
    assert set(events["stage"]) <= set(STAGES)
    assert set(events["contract_type"]) == {"standard", "non-standard"}
    assert events["payment_terms"].str.fullmatch(r"Net \d+").all()
    assert events["opportunity_id"].str.fullmatch(r"OPP-\d{6}").all()
    assert events["account"].str.fullmatch(r"ACC-\d{4,}").all()


def test_truth_schema(events: pd.DataFrame, truth: pd.DataFrame) -> None:
    assert tuple(truth.columns) == TRUTH_COLUMNS
    assert len(truth) == N_CASES and truth["opportunity_id"].is_unique
    assert set(truth["opportunity_id"]) == set(events["opportunity_id"])
    assert truth["won"].dtype == bool and truth["open_at_extraction"].dtype == bool
    assert truth["workload"].dtype == np.int64
    probs = truth[["p_win", *(f"p_win_from_{s.lower()}" for s in SALES_STAGES)]]
    assert ((probs > 0) & (probs < 1)).all().all()
    # a later stage has fewer gates left, so its oracle is never lower
    assert (probs.diff(axis=1).iloc[:, 1:] >= -1e-12).all().all()
    np.testing.assert_allclose(truth["p_win"], truth["p_win_from_prospecting"])
    won = truth["won"]
    assert truth.loc[won, "payment_delay_days"].notna().all()
    assert truth.loc[~won, ["payment_delay_days", "expected_payment_delay_days"]].isna().all().all()
    assert (truth["cycle_days"] > 0).all() and (truth["expected_cycle_days"] > 0).all()


def test_rows_sorted_by_case_then_time(events: pd.DataFrame) -> None:
    resorted = events.sort_values(["opportunity_id", "event_time"], kind="stable")
    pd.testing.assert_frame_equal(resorted.reset_index(drop=True), events)
    steps = events.groupby("opportunity_id")["event_time"].diff().dropna()
    assert (steps >= pd.Timedelta(0)).all()


# --- process invariants --------------------------------------------------------------------


def test_every_case_starts_with_lead_captured(events: pd.DataFrame) -> None:
    first = events.groupby("opportunity_id")["activity"].first()
    assert (first == "Lead Captured").all()
    assert (events["activity"] == "Lead Captured").sum() == N_CASES


def test_nothing_after_the_end_event(events: pd.DataFrame) -> None:
    is_end = events["activity"].isin(END_ACTIVITIES)
    assert is_end.groupby(events["opportunity_id"]).sum().max() == 1
    last = events.groupby("opportunity_id")["activity"].last()
    ended = is_end.groupby(events["opportunity_id"]).any()
    assert last[ended].isin(END_ACTIVITIES).all()


def test_won_and_lost_cases(events: pd.DataFrame) -> None:
    act = events["activity"]
    won_ids = set(events.loc[act == "Opportunity Won", "opportunity_id"])
    lost_ids = set(events.loc[act == "Opportunity Lost", "opportunity_id"])
    assert won_ids and lost_ids and not won_ids & lost_ids
    paid = events[act == "Payment Received"].set_index("opportunity_id")["event_time"]
    won_at = events[act == "Opportunity Won"].set_index("opportunity_id")["event_time"]
    assert set(paid.index) <= won_ids
    assert (won_at.reindex(paid.index) < paid).all()
    assert (act == "Opportunity Lost").groupby(events["opportunity_id"]).sum().max() == 1
    lost_rows = events[act == "Opportunity Lost"]
    assert lost_rows["lost_reason"].isin(LOST_REASONS).all()
    assert (lost_rows["stage"] == "Closed Lost").all()
    assert events.loc[act != "Opportunity Lost", "lost_reason"].isna().all()
    assert set(lost_rows["lost_reason"]) == set(LOST_REASONS)


def test_stage_and_discount_columns(events: pd.DataFrame) -> None:
    act = events["activity"]
    quotes = act == "Quote Issued"
    assert events.loc[quotes, "discount_pct"].between(0, 50).all()
    assert events.loc[~quotes, "discount_pct"].isna().all()
    post_win = act.isin(["Opportunity Won", "Sales Order Created", "Order Fulfilled",
                         "Invoice Created", "Invoice Sent", "Invoice Corrected",
                         "Payment Reminder Sent", "Payment Received"])
    assert (events.loc[post_win, "stage"] == "Closed Won").all()
    assert (events.loc[act == "Lead Captured", "stage"] == "Lead").all()
    regressed = events.loc[act == "Stage Regressed", "stage"]
    assert len(regressed) > 0 and (regressed == "Proposal").all()
    # a stage regression is followed by a re-quote
    nxt = events.groupby("opportunity_id")["activity"].shift(-1)
    assert (nxt[act == "Stage Regressed"].dropna() == "Quote Issued").all()


def test_case_attributes_are_constant(events: pd.DataFrame) -> None:
    case_level = ["amount", "currency", "owner", "region", "account", "lead_source",
                  "product_line", "contract_type", "payment_terms"]
    assert (events.groupby("opportunity_id")[case_level].nunique() == 1).all().all()


def test_business_hours_and_extraction(events: pd.DataFrame) -> None:
    times = events["event_time"]
    assert (times.dt.day_of_week < 5).all()
    seconds = times.dt.hour * 3600 + times.dt.minute * 60 + times.dt.second
    assert seconds.between(8 * 3600, 18 * 3600).all()
    assert times.max() <= pd.Timestamp("2025-01-01", tz="UTC")
    assert times.min() >= pd.Timestamp("2022-01-01", tz="UTC")


def test_open_cases_match_truth(events: pd.DataFrame, truth: pd.DataFrame) -> None:
    ended = events["activity"].isin(END_ACTIVITIES).groupby(events["opportunity_id"]).any()
    tr = truth.set_index("opportunity_id")
    assert (~ended.reindex(tr.index)).equals(tr["open_at_extraction"])
    assert 0.05 <= tr["open_at_extraction"].mean() <= 0.25
    won_in_log = events.loc[events["activity"] == "Opportunity Won", "opportunity_id"].unique()
    assert tr.loc[won_in_log, "won"].all()
    lost_in_log = events.loc[events["activity"] == "Opportunity Lost", "opportunity_id"]
    assert not tr.loc[lost_in_log, "won"].any()


def test_payment_and_reminders_follow_terms(events: pd.DataFrame, truth: pd.DataFrame) -> None:
    act = events["activity"]
    ids = events["opportunity_id"]
    invoice = events[act == "Invoice Created"].groupby("opportunity_id")["event_time"].first()
    paid = events[act == "Payment Received"].set_index("opportunity_id")["event_time"]
    terms = events.groupby("opportunity_id")["payment_terms"].first().str[4:].astype(float)
    due = invoice + pd.to_timedelta(terms.reindex(invoice.index), unit="D")
    delay = (paid - due.reindex(paid.index)).dt.total_seconds() / 86400
    recorded = truth.set_index("opportunity_id")["payment_delay_days"].reindex(paid.index)
    np.testing.assert_allclose(delay, recorded, atol=1e-6)
    reminders = events[act == "Payment Reminder Sent"]
    assert len(reminders) > 0
    assert (reminders["event_time"].to_numpy() > due.reindex(reminders["opportunity_id"])
            .to_numpy()).all()
    corrected = ids[act == "Invoice Corrected"].unique()
    sent = events[act == "Invoice Sent"].groupby("opportunity_id").size()
    assert len(corrected) > 0 and (sent.reindex(corrected) == 2).all()


# --- the world -------------------------------------------------------------------------------


def test_reps_regions_and_accounts(events: pd.DataFrame, cases: pd.DataFrame) -> None:
    assert 30 <= events["owner"].nunique() <= 60
    assert events["region"].nunique() >= 4
    assert (cases.groupby("owner")["region"].nunique() == 1).all()
    assert (cases.groupby("region")["currency"].nunique() == 1).all()
    assert set(events["lead_source"]) == {"web", "referral", "event", "partner", "outbound"}
    assert set(events["product_line"]) == {"Software", "Hardware", "Services", "Support"}
    per_account = cases["account"].value_counts()
    assert per_account.max() >= 10 and (per_account >= 2).mean() > 0.5
    assert N_CASES / 12 <= len(per_account) <= N_CASES / 3


def test_losses_at_every_sales_stage(events: pd.DataFrame) -> None:
    before = events.groupby("opportunity_id")["stage"].shift(1)
    lost_from = before[events["activity"] == "Opportunity Lost"]
    assert set(SALES_STAGES) <= set(lost_from)


def test_process_change_lowers_the_approval_threshold(events: pd.DataFrame) -> None:
    drift = pd.Timestamp("2022-01-01", tz="UTC") + pd.Timedelta(days=0.6 * 1096)
    nxt_all = events.groupby("opportunity_id")["activity"].shift(-1)
    quotes = events[(events["activity"] == "Quote Issued") & nxt_all.notna()]  # not cut off
    needs = nxt_all.loc[quotes.index] == "Discount Approval Requested"
    early = quotes["event_time"] < drift
    assert not needs[early & (quotes["discount_pct"] <= 15)].any()
    assert not needs[~early & (quotes["discount_pct"] <= 10)].any()
    assert needs[~early & (quotes["discount_pct"] > 10)].all()
    approvers = events.loc[events["activity"] == "Discount Approved"]
    assert (approvers.loc[approvers["event_time"] < drift, "user"] != "Deal Desk").all()
    assert (approvers.loc[approvers["event_time"] >= drift + pd.Timedelta(days=5), "user"]
            == "Deal Desk").all()


def test_quarter_end_brings_more_discount(events: pd.DataFrame) -> None:
    first = events[events["activity"] == "Quote Issued"].groupby("opportunity_id").first()
    naive = first["event_time"].dt.tz_convert(None)
    days_left = (naive.dt.to_period("Q").dt.end_time - naive).dt.total_seconds() / 86400
    near = days_left < 20
    assert first.loc[near, "discount_pct"].mean() > first.loc[~near, "discount_pct"].mean() + 1.5


# --- designed effects and the oracle ----------------------------------------------------------


def test_lead_source_effect(cases: pd.DataFrame) -> None:
    rate = cases.groupby("lead_source")["won"].mean()
    assert rate["referral"] > rate["outbound"] + 0.15


def test_oracle_separates_outcomes(cases: pd.DataFrame) -> None:
    tercile = pd.qcut(cases["p_win"], 3, labels=False)
    rate = cases.groupby(tercile)["won"].mean()
    assert rate[2] > rate[0] + 0.4


def test_oracle_is_calibrated(cases: pd.DataFrame) -> None:
    # cases started in the first 60 % of the window have all ended before extraction
    early = cases[cases["start"] < pd.Timestamp("2023-10-01", tz="UTC")]
    assert not early["open_at_extraction"].any()
    assert abs(early["p_win"].mean() - early["won"].mean()) < 0.03
    bins = pd.qcut(early["p_win"], 5, labels=False)
    table = early.groupby(bins).agg(p=("p_win", "mean"), won=("won", "mean"))
    assert ((table["p"] - table["won"]).abs() < 0.06).all(), table


def test_stage_oracle_is_calibrated(events: pd.DataFrame, cases: pd.DataFrame) -> None:
    reached = set(events.loc[events["stage"] == "Negotiation", "opportunity_id"])
    done = cases[cases.index.isin(reached) & ~cases["open_at_extraction"]]
    assert abs(done["p_win_from_negotiation"].mean() - done["won"].mean()) < 0.04


def test_unhealthy_deals_requote_more(events: pd.DataFrame, cases: pd.DataFrame) -> None:
    reached = set(events.loc[events["stage"] == "Negotiation", "opportunity_id"])
    done = cases[cases.index.isin(reached) & ~cases["open_at_extraction"]]
    quotes = done.groupby("won")["quotes"].mean()
    assert quotes[False] > quotes[True] + 0.1
    assert done.loc[done["won"], "u_health"].mean() > done.loc[~done["won"], "u_health"].mean()


def test_rep_skill_and_workload_matter(cases: pd.DataFrame) -> None:
    skill = pd.qcut(cases["rep_skill"], 3, labels=False, duplicates="drop")
    rate = cases.groupby(skill)["won"].mean()
    assert rate.iloc[-1] > rate.iloc[0] + 0.08
    busy = cases["workload"] > 1.6 * cases["workload"].median()
    assert busy.mean() > 0.03
    assert cases.loc[busy, "won"].mean() < cases.loc[~busy, "won"].mean() - 0.04


def test_account_habit_drives_payment_delay(cases: pd.DataFrame) -> None:
    paid = cases[cases["won"]]
    quint = pd.qcut(paid["account_habit_days"], 5, labels=False)
    delay = paid.groupby(quint)["payment_delay_days"].mean()
    assert delay[4] > delay[0] + 20
    corr = np.corrcoef(paid["expected_payment_delay_days"], paid["payment_delay_days"])[0, 1]
    assert corr > 0.8


def test_expected_cycle_tracks_realised(cases: pd.DataFrame) -> None:
    ratio = cases["cycle_days"].mean() / cases["expected_cycle_days"].mean()
    assert 0.85 < ratio < 1.15
    quint = pd.qcut(cases["expected_cycle_days"], 5, labels=False)
    realised = cases.groupby(quint)["cycle_days"].mean()
    assert realised.is_monotonic_increasing


# --- arguments and speed -----------------------------------------------------------------------


def test_tiny_logs_and_other_windows() -> None:
    events, truth = simulate_log(1, 0)
    assert len(truth) == 1 and events["activity"].iloc[0] == "Lead Captured"
    events, truth = simulate_log(300, 1, start="2020-07-15T00:00:00Z", years=1.5)
    assert events["event_time"].min() >= pd.Timestamp("2020-07-15", tz="UTC")
    # extraction = start + round(years * 365.25) days
    assert events["event_time"].max() <= pd.Timestamp("2022-01-14", tz="UTC")
    assert truth["opportunity_id"].is_unique


@pytest.mark.parametrize("kwargs", [{"n_cases": 0, "seed": 1}, {"n_cases": 5, "seed": 1,
                                                                 "years": 0.0}])
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        simulate_log(**kwargs)


def test_speed_guard() -> None:
    started = time.perf_counter()
    events, _ = simulate_log(20_000, 11)
    elapsed = time.perf_counter() - started
    print(f"simulate_log(20_000): {elapsed:.2f} s, {len(events):,} events")
    assert elapsed < 20.0


def test_win_probability_at_creation_is_a_calibrated_ceiling_below_the_oracle() -> None:
    """Known before the first event: everything but the deal's own health and noise. It
    ranks deals worse than the oracle that knows their health, better than the lead
    source and product alone, and its probabilities are honest."""
    from sklearn.metrics import roc_auc_score

    events, truth = simulate_log(n_cases=6000, seed=11)
    first = events.groupby("opportunity_id").first()
    # ``won`` is realised by the full simulation, also for cases the extraction cut
    done = truth.set_index("opportunity_id")
    won = done["won"].astype(int)
    creation = roc_auc_score(won, done["p_win_at_creation"])
    oracle = roc_auc_score(won, done["p_win"])
    static = pd.Series(pd.factorize(first["lead_source"] + first["product_line"])[0],
                       index=first.index).reindex(done.index)
    by_group = won.groupby(static).transform("mean")  # in-sample: flatters the static side
    assert roc_auc_score(won, by_group) + 0.05 < creation < oracle - 0.03
    assert abs(done["p_win_at_creation"].mean() - won.mean()) < 0.02
    bins = pd.qcut(done["p_win_at_creation"], 5, labels=False)
    table = done.assign(won=won).groupby(bins)[["p_win_at_creation", "won"]].mean()
    assert (table["p_win_at_creation"] - table["won"]).abs().max() < 0.05, table
    same = simulate_log(n_cases=6000, seed=11)[1]  # the added truth column changed no draw
    pd.testing.assert_frame_equal(same, truth)
