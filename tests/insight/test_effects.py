"""The insight finds what the simulator injected, at the injected size.

One simulated world with every effect and the same world (same seed) without: the
effects draw from their own generator, so the baseline is the very log the effects
were added to, and a rate is recovered as the change the effect made.
Tolerances are about three standard errors of each estimate at these sample sizes.
"""

from __future__ import annotations

import pandas as pd
import pytest

from features.log import canonicalize
from features.mapping import default_mapping
from features.simulate import ProcessEffects, simulate_log
from insight import analyze

N_CASES, SEED = 5000, 3
APPROVAL_DAYS = 30.0
REQUOTE_RATE = 0.3
DEVIATION_RATE = 0.5
THRESHOLD = 5.0
BYPASS_RATE = 0.2
LATE_SHARE, LATE_DAYS = 0.2, 30.0


@pytest.fixture(scope="module")
def baseline():
    events, truth = simulate_log(N_CASES, SEED)
    return analyze(canonicalize(events, default_mapping())), events, truth


@pytest.fixture(scope="module")
def busiest_rep(baseline) -> str:
    events = baseline[1]
    return str(events.groupby("owner")["opportunity_id"].nunique().idxmax())


@pytest.fixture(scope="module")
def injected(busiest_rep):
    effects = ProcessEffects(
        approval_delay_days=APPROVAL_DAYS, requote_loop_rate=REQUOTE_RATE,
        deviating_rep=busiest_rep, deviation_rate=DEVIATION_RATE,
        discount_threshold=THRESHOLD, approval_bypass_rate=BYPASS_RATE,
        late_payer_share=LATE_SHARE, late_payer_days=LATE_DAYS)
    events, truth = simulate_log(N_CASES, SEED, effects=effects)
    return analyze(canonicalize(events, default_mapping()), discount_threshold=THRESHOLD), \
        events, truth


APPROVAL_EDGE = ("Discount Approval Requested", "Discount Approved")


def _rank(ins, edge: tuple[str, str]) -> int:
    t = ins.bottlenecks.transitions
    return int(t.loc[(t["source"] == edge[0]) & (t["target"] == edge[1]), "rank"].iloc[0])


def test_the_injected_approval_bottleneck_ranks_first(baseline, injected) -> None:
    ins = injected[0]
    assert _rank(ins, APPROVAL_EDGE) == 1
    assert _rank(baseline[0], APPROVAL_EDGE) > 5  # it is the injection that put it there
    top = ins.bottlenecks.transitions.iloc[0]
    # median wait = the injected median plus the desk's own (0.6-2.5 days) and office hours
    assert APPROVAL_DAYS < top["median_days"] < APPROVAL_DAYS + 4
    assert any("Discount Approval Requested → Discount Approved" in h for h in ins.headlines)


def test_the_requote_loop_rate_is_recovered(baseline, injected) -> None:
    def share(ins) -> float:
        a = ins.rework.activities.set_index("activity")
        return float(a.loc["Quote Issued", "share_repeated"])

    p0, p1 = share(baseline[0]), share(injected[0])
    recovered = (p1 - p0) / (1 - p0)  # the loop hits cases that would not repeat as well
    assert recovered == pytest.approx(REQUOTE_RATE, abs=0.04)
    truth = injected[2]
    quoted = set(injected[1].loc[injected[1]["activity"] == "Quote Issued", "opportunity_id"])
    assert truth.loc[truth["opportunity_id"].isin(quoted), "effect_requote_loop"].mean() == \
        pytest.approx(REQUOTE_RATE, abs=0.03)


def test_the_deviating_rep_is_found_and_its_rate_recovered(baseline, injected,
                                                           busiest_rep) -> None:
    seg = injected[0].conformance.by_segment
    reps = seg[seg["attribute"] == "rep"].sort_values("skip_rate", ascending=False)
    assert reps.iloc[0]["segment"] == busiest_rep
    assert reps.iloc[1]["skip_rate"] == 0.0  # nobody else skips
    base = baseline[0].conformance.by_segment
    assert (base.loc[base["attribute"] == "rep", "skip_rate"] == 0).all()
    # the skip shows once the case goes past qualification: the rate among those cases
    cases = injected[0].conformance.cases.merge(
        injected[1].groupby("opportunity_id")["owner"].first(), left_on="case_id",
        right_index=True)
    past = ~cases["furthest_step"].isin(["Lead Captured", "Opportunity Created",
                                          "Opportunity Qualified"])
    mine = cases[past & (cases["owner"] == busiest_rep)]
    assert len(mine) >= 60
    assert (mine["skipped"] > 0).mean() == pytest.approx(DEVIATION_RATE, abs=0.15)


def test_the_discount_policy_and_its_bypass_rate_are_recovered(injected) -> None:
    policy = injected[0].discounts.policy.iloc[0]
    assert policy["threshold"] == THRESHOLD
    decided = policy["quotes_above"] - policy["pending"]
    assert policy["without_approval"] / decided == pytest.approx(BYPASS_RATE, abs=0.03)
    # a bypassed quote that is its open case's last event cannot be told from one whose
    # approval is still to come: the insight calls those pending
    bypassed = injected[2]["effect_bypassed_approvals"].sum()
    assert policy["without_approval"] <= bypassed <= policy["without_approval"] + \
        policy["pending"]


def test_the_late_paying_accounts_are_found(injected) -> None:
    ins, events, truth = injected
    late = truth.set_index("opportunity_id")["effect_late_payer"]
    invoices = ins.payments.invoices.dropna(subset=["delay_days"])
    is_late = late.reindex(invoices["case_id"]).to_numpy()
    gap = invoices["delay_days"][is_late].mean() - invoices["delay_days"][~is_late].mean()
    assert gap == pytest.approx(LATE_DAYS, abs=4.0)
    # the per-account table ranks the late group on top: the chance that a late account
    # shows a longer mean delay than an on-time one (AUC), accounts with 2+ payments
    accounts = ins.payments.by_segment
    accounts = accounts[(accounts["attribute"] == "account") & (accounts["paid"] >= 2)]
    late_accounts = set(events.loc[events["opportunity_id"].isin(late[late].index), "account"])
    flag = accounts["segment"].isin(late_accounts).to_numpy()
    ranks = accounts["mean_delay_days"].rank().to_numpy()
    n_late, n_other = flag.sum(), (~flag).sum()
    auc = (ranks[flag].sum() - n_late * (n_late + 1) / 2) / (n_late * n_other)
    assert n_late >= 30 and auc > 0.85


def test_default_effects_change_nothing() -> None:
    plain = simulate_log(300, 5)
    explicit = simulate_log(300, 5, effects=ProcessEffects())
    pd.testing.assert_frame_equal(plain[0], explicit[0])
    pd.testing.assert_frame_equal(plain[1], explicit[1])
    effect_cols = [c for c in plain[1].columns if c.startswith("effect_")]
    assert len(effect_cols) == 4 and not plain[1][effect_cols].any().any()


@pytest.mark.parametrize("kwargs", [{"requote_loop_rate": 1.5}, {"approval_delay_days": -1},
                                    {"discount_threshold": 150.0}])
def test_bad_effects_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        ProcessEffects(**kwargs)


def test_unknown_deviating_rep_is_refused() -> None:
    with pytest.raises(ValueError, match="not a rep"):
        simulate_log(50, 1, effects=ProcessEffects(deviating_rep="Rep 99",
                                                   deviation_rate=0.5))
