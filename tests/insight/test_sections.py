"""Every insight section on a tiny log whose figures are counted by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.log import canonicalize
from features.mapping import Mapping
from insight import InsightError, analyze
from insight.context import Context
from tests.insight.logs import tiny_frame, tiny_log


@pytest.fixture(scope="module")
def ins():
    return analyze(tiny_log())


def edge(ins, source: str, target: str) -> pd.Series:
    e = ins.process_map.edges
    return e[(e["source"] == source) & (e["target"] == target)].iloc[0]


def test_directly_follows_counts_and_times(ins) -> None:
    e = ins.process_map.edges
    assert len(e) == 10 and e["events"].sum() == 18 - 4  # one edge per event after a start
    lc_oc = edge(ins, "Lead Captured", "Opportunity Created")
    assert (lc_oc["events"], lc_oc["cases"]) == (3, 3)
    assert lc_oc["median_days"] == pytest.approx(1.0)
    assert lc_oc["mean_days"] == pytest.approx(4 / 3)
    assert lc_oc["p90_days"] == pytest.approx(1.8)  # 1, 1, 2 -> linear interpolation
    assert edge(ins, "Quote Issued", "Quote Issued")["events"] == 1
    assert edge(ins, "Invoice Created", "Payment Received")["total_days"] == pytest.approx(33)
    starts = dict(ins.process_map.starts.to_numpy())
    ends = dict(ins.process_map.ends.to_numpy())
    assert starts == {"Lead Captured": 4}
    assert ends == {"Payment Received": 1, "Opportunity Lost": 1, "Invoice Created": 1,
                    "Opportunity Created": 1}
    acts = ins.process_map.activities.set_index("activity")
    assert acts.loc["Quote Issued", "events"] == 4 and acts.loc["Quote Issued", "cases"] == 3


def test_row_order_does_not_matter_and_input_is_untouched() -> None:
    frame = tiny_frame()
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    before = shuffled.copy()
    log = tiny_log(shuffled)
    kept = log.events.copy()
    a = analyze(tiny_log()).process_map.edges
    b = analyze(log).process_map.edges
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(shuffled, before)
    pd.testing.assert_frame_equal(log.events, kept)


def test_variants_and_detail_filter(ins) -> None:
    v = ins.variants.table
    assert len(v) == 4 and (v["cases"] == 1).all() and v["share"].sum() == pytest.approx(1)
    a = v[v["label"].str.endswith("Payment Received")].iloc[0]
    assert a["length"] == 7 and a["win_rate"] == 1.0
    assert a["median_cycle_days"] == pytest.approx(40)
    assert ins.variants.tail_share == 0.0
    half = ins.detail_maps[0.5]
    assert half.cases_kept == 2 and half.edges["events"].sum() < ins.process_map.edges[
        "events"].sum()


def test_variants_tell_repeated_paths_apart() -> None:
    frame = tiny_frame()
    copy = frame[frame["case"] == "D"].assign(case="E")
    ins = analyze(tiny_log(pd.concat([frame, copy], ignore_index=True)))
    v = ins.variants.table
    assert len(v) == 4 and v.iloc[0]["cases"] == 2
    assert v.iloc[0]["activities"] == ("Lead Captured", "Opportunity Created")


def test_funnel(ins) -> None:
    f = ins.funnel.steps.set_index("milestone")
    assert list(f.index) == ["Lead", "Opportunity", "Quote", "Won", "Invoiced", "Paid"]
    assert f["cases"].tolist() == [4, 3, 3, 2, 2, 1]
    assert f.loc["Quote", "from_previous"] == 2
    assert f.loc["Quote", "conversion"] == pytest.approx(2 / 3)
    assert f.loc["Paid", "conversion"] == pytest.approx(0.5)
    assert f.loc["Paid", "median_days"] == pytest.approx(33)
    assert f.loc["Opportunity", "open_at_previous"] == 1  # C: no opportunity, not ended


def test_bottlenecks_rank_by_total_wait(ins) -> None:
    t = ins.bottlenecks.transitions
    assert (t.iloc[0]["source"], t.iloc[0]["target"]) == ("Invoice Created", "Payment Received")
    total_cycle = 40 + 9 + 4 + 1
    assert t.iloc[0]["share_of_cycle"] == pytest.approx(33 / total_cycle)
    stages = ins.bottlenecks.stages.set_index("stage")
    assert stages.loc["Prospecting", "median_days"] == pytest.approx(2.0)
    assert ins.bottlenecks.stage_source == "stage column"
    stuck = ins.bottlenecks.stuck.set_index("case_id")
    assert "D" in stuck.index and stuck.loc["D", "stage"] == "Prospecting"
    assert stuck.loc["D", "age_days"] == pytest.approx(39)
    assert "A" not in stuck.index and "B" not in stuck.index  # completed cases are not stuck


def test_rework(ins) -> None:
    a = ins.rework.activities.set_index("activity")
    assert a.loc["Quote Issued", "cases_repeated"] == 1
    assert a.loc["Quote Issued", "cases_with"] == 3
    assert a.loc["Quote Issued", "extra_events"] == 1
    s = ins.rework.summary.set_index("kind")
    assert s.loc["repeated activity", "cases"] == 1
    assert s.loc["stage regression", "cases"] == 1  # B: Negotiation -> Proposal
    assert s.loc["any rework", "win_rate_with"] == 0.0
    assert s.loc["any rework", "win_rate_without"] == 1.0
    r = ins.rework.regressions.iloc[0]
    assert (r["from_stage"], r["to_stage"], r["cases"]) == ("Negotiation", "Proposal", 1)


def test_conformance(ins) -> None:
    c = ins.conformance.cases.set_index("case_id")
    assert c["conforming"].to_dict() == {"A": True, "B": False, "C": False, "D": True}
    assert c.loc["C", "skipped"] == 1 and c.loc["C", "fitness"] == pytest.approx(0.8)
    assert c.loc["B", "repeated"] == 1 and c.loc["B", "fitness"] == pytest.approx(0.75)
    assert c.loc["A", "unexpected"] == 1  # Discount Approved
    steps = ins.conformance.steps.set_index("activity")
    assert steps.loc["Opportunity Created", "skipped_cases"] == 1
    assert ins.conformance.deviation_rate == 0.5
    seg = ins.conformance.by_segment
    north = seg[(seg["attribute"] == "region") & (seg["segment"] == "North")].iloc[0]
    assert north["deviation_rate"] == 0.5 and north["repeat_rate"] == 0.5


def test_conformance_out_of_order_and_happy_path() -> None:
    frame = tiny_frame()
    # D does Quote Issued before Opportunity Created
    extra = pd.DataFrame([{**frame.iloc[-1].to_dict(), "activity": "Quote Issued",
                           "time": "2024-01-01T12:00:00+00:00", "discount": 1.0}])
    ins = analyze(tiny_log(pd.concat([frame, extra], ignore_index=True)))
    d = ins.conformance.cases.set_index("case_id").loc["D"]
    assert d["out_of_order"] == 1 and not d["conforming"]
    happy = analyze(tiny_log(), happy_path=["Lead Captured", "Quote Issued"])
    assert happy.conformance.source == "happy path"
    assert happy.conformance.cases.set_index("case_id").loc["C", "conforming"]


def test_discounts(ins) -> None:
    d = ins.discounts
    p = d.policy.iloc[0]
    assert (p["quotes_above"], p["with_approval"], p["without_approval"]) == (2, 1, 1)
    assert p["median_wait_days"] == pytest.approx(2.0)
    assert p["share_of_won_above"] == 1.0  # A (20%) and C (25%) are both above 15%
    assert d.violations["case_id"].tolist() == ["C"]
    bands = d.bands.set_index("band")
    assert bands.loc["15-20%", "cases"] == 1 and bands.loc["5-10%", "lost"] == 1
    assert bands.loc["20-30%", "value_USD"] == 3000.0
    assert d.given_away == {"EUR": pytest.approx(200.0), "USD": pytest.approx(750.0)}
    assert d.distribution["quotes"].sum() == 4


def test_payments(ins) -> None:
    p = ins.payments
    s = p.summary.iloc[0]
    assert (s["invoices"], s["paid"], s["open"]) == (2, 1, 1)
    assert s["dso_days"] == pytest.approx(33) and s["median_delay_days"] == pytest.approx(3)
    assert s["on_time_share"] == 0.0
    aging = p.aging.iloc[0]
    assert (aging["bucket"], aging["currency"], aging["invoices"]) == (
        "1-30 days past due", "USD", 1)
    assert aging["value"] == 3000.0


def test_segments_and_month(ins) -> None:
    t = ins.segments.table
    region = t[t["attribute"] == "region"].set_index("segment")
    assert region.loc["North", "win_rate"] == 0.5 and region.loc["South", "win_rate"] == 1.0
    assert region.loc["South", "cases"] == 2
    month = t[t["attribute"] == "month"]
    assert month["segment"].tolist() == ["2024-01"] and month["cases"].iloc[0] == 4


def test_by_segment_repeats_every_section() -> None:
    ins = analyze(tiny_log(), by="region")
    assert set(ins.by_segment) == {"North", "South"}
    steps = ins.stacked("funnel", "steps")
    assert steps.columns[0] == "region"
    north = steps[steps["region"] == "North"].set_index("milestone")
    assert north.loc["Lead", "cases"] == 2 and north.loc["Won", "cases"] == 1
    assert ins.by_segment["South"].overview.figures.iloc[0]["cases"] == 2
    with pytest.raises(InsightError, match="cannot segment by 'colour'"):
        analyze(tiny_log(), by="colour")


def test_a_segment_has_the_case_table_of_its_own_events() -> None:
    """A segment's cases come from the whole log's case table (the Dask path has no
    other): it must equal the table its events alone would give, without the
    attributes none of its cases has."""
    frame = tiny_frame()
    frame.loc[frame["case"].isin(["C", "D"]), ["region", "value"]] = None
    log = tiny_log(frame)
    ctx = Context.from_log(log)
    south = ctx.subset((ctx.cases["rep"] == "Cy").to_numpy())
    alone = Context.from_events(south.events, log.mapping.roles, ctx.as_of)
    assert {"region", "value"} & set(south.cases.columns) == set()
    assert "region" in ctx.cases.columns and south.n_cases == 2
    pd.testing.assert_frame_equal(south.cases, alone.cases, check_exact=True)
    north = ctx.subset((ctx.cases["rep"] != "Cy").to_numpy())
    pd.testing.assert_frame_equal(
        north.cases, Context.from_events(north.events, log.mapping.roles).cases)


def test_money_is_never_summed_across_currencies(ins) -> None:
    f = ins.overview.figures.iloc[0]
    assert f["value_won_EUR"] == 1000.0 and f["value_won_USD"] == 3000.0
    assert not any(c == "value_won" for c in ins.overview.figures.columns)
    assert any("EUR" in h and "USD" in h for h in ins.headlines)


def test_sections_without_their_roles_are_unavailable_with_a_reason() -> None:
    frame = pd.DataFrame({"case": ["1", "1", "2", "2", "2"],
                          "activity": ["a", "b", "a", "c", "b"],
                          "time": ["2024-01-01T10:00:00Z", "2024-01-02T10:00:00Z",
                                   "2024-01-01T10:00:00Z", "2024-01-01T12:00:00Z",
                                   "2024-01-03T10:00:00Z"]})
    mapping = Mapping.from_dict({"columns": {"case_id": "case", "activity": "activity",
                                             "timestamp": "time"}})
    ins = analyze(canonicalize(frame, mapping, source="bare.csv"))
    assert ins.process_map.available and len(ins.process_map.edges) == 3
    assert not ins.funnel.available and "milestones" in ins.funnel.reason
    assert not ins.discounts.available and "no discount column" in ins.discounts.reason
    assert not ins.payments.available and "invoice" in ins.payments.reason
    assert not ins.conformance.available and "expected order" in ins.conformance.reason
    assert ins.rework.available and ins.bottlenecks.available
    assert ins.bottlenecks.stage_source == "last activity"
    assert np.isnan(ins.overview.figures.iloc[0]["win_rate"])
    assert ins.headlines  # still says what it can


def test_invoice_timing_equals_the_payment_delay_label() -> None:
    """The payments section reads invoices as the payment-delay model's labels do."""
    from features.mapping import default_mapping
    from features.outcomes import payment_timing
    from features.simulate import simulate_log
    from insight.context import Context
    from insight.payments import invoice_timing

    events, _ = simulate_log(400, 2)
    log = canonicalize(events, default_mapping())
    ours = invoice_timing(Context.from_log(log)).sort_index()
    theirs = payment_timing(log.events, log.mapping.roles).sort_index()
    assert len(ours) > 50
    pd.testing.assert_index_equal(ours.index.astype(str), theirs.index.astype(str))
    for column in ("invoice_time", "due_time", "payment_time"):
        assert (ours[column].to_numpy() == theirs[column].to_numpy()).sum() + \
            (ours[column].isna() & theirs[column].isna()).sum() == len(ours), column
    np.testing.assert_allclose(ours["delay_days"], theirs["delay_days"], rtol=1e-12)
    np.testing.assert_allclose(ours["terms_days"], theirs["terms_days"])


def test_default_funnel_follows_the_cases_and_names_each_activity_once() -> None:
    """Traffic fines: the payment is both the win and the payment; notified before paid."""
    frame = pd.DataFrame({"case": ["1", "1", "1", "2", "2"],
                          "activity": ["Create", "Notify", "Pay", "Create", "Notify"],
                          "time": ["2024-01-01", "2024-01-05", "2024-02-01", "2024-01-02",
                                   "2024-01-09"]})
    mapping = Mapping.from_dict({
        "columns": {"case_id": "case", "activity": "activity", "timestamp": "time"},
        "roles": {"won": ["Pay"], "invoice": ["Notify"], "payment": ["Pay"], "case_end": []}})
    steps = analyze(canonicalize(frame, mapping)).funnel.steps
    assert steps["milestone"].tolist() == ["Invoiced", "Won"]
    assert steps["cases"].tolist() == [2, 1]


def test_by_month_keeps_the_latest_months_apart() -> None:
    from insight import analyze as run
    from insight.analyze import MAX_SEGMENTS

    frame = tiny_frame()
    shifted = []
    for i in range(MAX_SEGMENTS + 2):  # one copy of the log per month
        part = frame.assign(case=frame["case"] + f"-{i}",
                            time=(pd.to_datetime(frame["time"]) + pd.DateOffset(months=i))
                            .map(lambda t: t.isoformat()))
        shifted.append(part)
    ins = run(tiny_log(pd.concat(shifted, ignore_index=True)), by="month")
    keys = list(ins.by_segment)
    assert keys[0] == "(earlier)" and len(keys) == MAX_SEGMENTS + 1
    assert keys[-1] == "2025-02" and keys[1] == "2024-03"
    assert ins.by_segment["(earlier)"].overview.figures.iloc[0]["cases"] == 8


def test_to_dict_is_plain_json(ins) -> None:
    import json

    data = analyze(tiny_log(), by="region").to_dict(max_rows=2)
    text = json.dumps(data, allow_nan=False)  # no NaN, no numpy or pandas objects
    back = json.loads(text)
    edges = back["sections"]["process_map"]["tables"]["edges"]
    assert edges["rows"] == 10 and len(edges["records"]) == 2
    assert back["sections"]["discounts"]["available"] is True
    stuck = back["sections"]["bottlenecks"]["tables"]["stuck"]["records"]
    assert stuck and stuck[0]["entered"].startswith("2024-01-")
    assert set(back["by_segment"]) == {"North", "South"}
    assert back["headlines"] == ins.headlines
