"""Sections split into per-partition partials: the cases dealt into partitions (each
with its own activity codes, as a Dask partition's ``Context`` has), the partials
combined and every group's values brought to a bucket, give the same bits as the
whole log in one process."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.log import canonicalize
from features.mapping import default_mapping
from features.simulate import simulate_log
from insight.analyze import analyze
from insight.bottlenecks import bottlenecks
from insight.conformance import conformance
from insight.context import Context, grouped_stats
from insight.discounts import discounts
from insight.funnel import funnel
from insight.partials import GroupValues, days_of, micro_sums
from insight.payments import payments
from insight.process_map import compute_variants, process_map
from insight.rework import rework


class Dealt:
    """A ``Runner`` over the cases of ``ctx`` dealt at random into ``parts`` partitions
    (``Context.subset``: each re-codes its activities), values in ``buckets`` buckets."""

    def __init__(self, ctx: Context, parts: int, buckets: int, seed: int) -> None:
        which = np.random.default_rng(seed).integers(0, parts, ctx.n_cases)
        self.numbers = [np.flatnonzero(which == p) for p in range(parts)]
        self.contexts = [ctx.subset(which == p) for p in range(parts)]
        self.buckets = buckets
        self.calls = 0

    def run(self, partial, stats, per_case=None, **params) -> tuple[list[Any], dict]:
        self.calls += 1
        partials = [partial(c, **{k: v[n] for k, v in (per_case or {}).items()}, **params)
                    for c, n in zip(self.contexts, self.numbers, strict=True)]
        values = [p.values for p in partials]
        for p in partials:
            p.values = None
        if stats is None:
            return partials, {}
        pieces = [v.split(self.buckets) for v in values if v is not None]
        tables: dict[str, list[pd.DataFrame]] = {}
        for b in range(self.buckets):
            for name, frame in stats(GroupValues.concat([p[b] for p in pieces])).items():
                tables.setdefault(name, []).append(frame)
        return partials, {k: pd.concat(v, ignore_index=True) for k, v in tables.items()}


@pytest.fixture(scope="module")
def ctx() -> Context:
    events, _ = simulate_log(600, seed=5)
    return Context.from_log(canonicalize(events, default_mapping()))


def test_exact_sums_do_not_depend_on_the_order_of_their_terms() -> None:
    rng = np.random.default_rng(0)
    micros = rng.integers(0, 400 * 86_400_000_000, 5000)
    keys = rng.integers(0, 3, 5000)
    whole = days_of(*micro_sums(keys, micros, 3))
    halves = [micro_sums(keys[s], micros[s], 3) for s in (slice(0, 1234), slice(1234, None))]
    added = days_of(halves[0][0] + halves[1][0], halves[0][1] + halves[1][1])
    assert np.array_equal(whole, added)
    exact = [sum(int(m) for m in micros[keys == g]) / 86_400_000_000 for g in range(3)]
    assert whole.tolist() == exact


def test_a_groups_quantiles_do_not_depend_on_the_groups_before_it() -> None:
    rng = np.random.default_rng(1)
    values = rng.random(1001) * 50
    alone = grouped_stats(np.zeros(1001, dtype=np.int64), values, 1)
    behind = grouped_stats(np.r_[np.zeros(777, dtype=np.int64), np.ones(1001, dtype=np.int64)],
                           np.r_[rng.random(777), values], 2)
    for name in ("median", "p90"):
        assert alone[name][0] == behind[name][1]
    assert alone["p90"][0] == pytest.approx(np.quantile(values, 0.9), rel=1e-12)


@pytest.mark.parametrize(("parts", "buckets"), [(3, 2), (4, 5)])
def test_process_maps_from_partitions_equal_the_whole_logs(ctx, parts, buckets) -> None:
    runner = Dealt(ctx, parts, buckets, seed=parts)
    variants = compute_variants(ctx)
    for coverage in (1.0, 0.8, 0.5):
        whole = process_map(ctx, coverage, variants)
        dealt = process_map(ctx, coverage, variants, runner)
        assert len(whole.edges) > 5 and dealt.cases_kept == whole.cases_kept
        for name, table in whole.tables().items():
            pd.testing.assert_frame_equal(dealt.tables()[name], table, check_exact=True)
    assert runner.calls == 3


@pytest.mark.parametrize("stage_column", [True, False])
def test_bottlenecks_from_partitions_equal_the_whole_logs(ctx, stage_column) -> None:
    if not stage_column:  # stages are then the last activity
        events = ctx.events.drop(columns="stage")
        ctx = Context.from_events(events, ctx.roles, ctx.as_of)
    runner = Dealt(ctx, 3, 2, seed=7)
    pmap = process_map(ctx)
    whole = bottlenecks(ctx, pmap)
    dealt = bottlenecks(ctx, pmap, runner)
    assert runner.calls == 2  # the stays, then the stalls against each stage's P90
    assert dealt.stage_source == whole.stage_source == (
        "stage column" if stage_column else "last activity")
    assert len(whole.stages) > 3 and len(whole.stuck) > 3
    assert whole.stages["stalls"].sum() > 50 and whole.stages["median_days"].notna().all()
    for name, table in whole.tables().items():
        pd.testing.assert_frame_equal(dealt.tables()[name], table, check_exact=True)


@pytest.mark.parametrize("stage_order", ["mapping", "shuffled"])
def test_rework_from_partitions_equals_the_whole_logs(ctx, stage_order) -> None:
    if stage_order == "shuffled":  # many regressions, many pairs tied on events
        order = list(reversed(ctx.roles.stage_order))
        ctx = Context.from_events(ctx.events, ctx.roles.model_copy(
            update={"stage_order": order}), ctx.as_of)
    runner = Dealt(ctx, 3, 1, seed=11)
    for counted in (None, ["Quote Issued", "Meeting Held"]):
        whole = rework(ctx, counted)
        dealt = rework(ctx, counted, runner)
        assert len(whole.activities) >= 2 and len(whole.regressions) >= 1
        assert whole.summary["cases"].min() > 0
        for name, table in whole.tables().items():
            pd.testing.assert_frame_equal(dealt.tables()[name], table, check_exact=True)
        assert np.array_equal(dealt.case_rework, whole.case_rework)
        assert dealt.counted == whole.counted
    assert runner.calls == 2
    if stage_order == "shuffled":
        assert len(whole.regressions) > 3


@pytest.mark.parametrize("strict", [False, True])
def test_conformance_from_partitions_equals_the_whole_logs(ctx, strict) -> None:
    runner = Dealt(ctx, 4, 1, seed=13)
    shuffled = list(reversed(ctx.roles.expected_order))  # many deviations of every kind
    for path in (None, shuffled):
        whole = conformance(ctx, path, strict)
        dealt = conformance(ctx, path, strict, runner)
        assert 0 < whole.deviation_rate <= 1 and len(whole.unexpected) > 1
        if path is not None:
            assert (whole.steps[["out_of_order_cases", "repeated_cases"]].sum() > 0).all()
        for name, table in whole.tables().items():
            pd.testing.assert_frame_equal(dealt.tables()[name], table, check_exact=True)
    assert runner.calls == 2


def test_discounts_from_partitions_equal_the_whole_logs(ctx) -> None:
    runner = Dealt(ctx, 3, 1, seed=17)
    for threshold in (15.0, 5.0, None):
        whole = discounts(ctx, threshold)
        dealt = discounts(ctx, threshold, runner=runner)
        assert whole.available and whole.distribution["quotes"].sum() > 100
        if threshold is not None:
            assert whole.policy["quotes_above"].iloc[0] > 10
        for name, table in whole.tables().items():
            pd.testing.assert_frame_equal(dealt.tables()[name], table, check_exact=True)
        assert dealt.given_away == whole.given_away
        assert np.array_equal(dealt.case_discount, whole.case_discount, equal_nan=True)
        assert np.array_equal(whole.case_discount, ctx.case_value(
            "discount_pct", how="last").to_numpy(dtype="float64"), equal_nan=True)
        assert dealt.policy_note == whole.policy_note
    assert runner.calls == 3
    # "approved" only by a payment: every lost case's quote above 5% bypassed the policy
    whole = discounts(ctx, 5.0, ["Payment Received"]).violations
    assert len(whole) > 10
    pd.testing.assert_frame_equal(discounts(ctx, 5.0, ["Payment Received"], runner=runner
                                            ).violations, whole, check_exact=True)


def test_payments_from_partitions_equal_the_whole_logs(ctx) -> None:
    runner = Dealt(ctx, 3, 1, seed=19)
    whole = payments(ctx)
    dealt = payments(ctx, runner)
    assert runner.calls == 1
    assert whole.summary["paid"].iloc[0] > 50 and whole.summary["open"].iloc[0] > 0
    assert whole.invoices["terms_known"].any() and len(whole.aging) > 0
    for name, table in whole.tables().items():
        pd.testing.assert_frame_equal(dealt.tables()[name], table, check_exact=True)


def test_variants_from_partitions_equal_the_whole_logs(ctx) -> None:
    runner = Dealt(ctx, 3, 1, seed=23)
    whole = compute_variants(ctx)
    dealt = compute_variants(ctx, runner=runner)
    assert runner.calls == 1 and len(whole.table) > 10
    pd.testing.assert_frame_equal(dealt.table, whole.table, check_exact=True)
    assert np.array_equal(dealt.case_variant, whole.case_variant)
    assert dealt.tail_share == whole.tail_share


def test_the_funnel_from_partitions_equals_the_whole_logs(ctx) -> None:
    runner = Dealt(ctx, 3, 1, seed=29)
    whole = funnel(ctx)
    dealt = funnel(ctx, runner=runner)
    assert runner.calls == 1  # the default milestones' times, read once, then ordered
    assert len(whole.steps) >= 5 and whole.steps["open_at_previous"].sum() > 0
    pd.testing.assert_frame_equal(dealt.steps, whole.steps, check_exact=True)
    given = [("Won", ["Opportunity Won"]), ("Quote", ["Quote Issued"]), ("Absent", ["Nothing"])]
    whole = funnel(ctx, given)
    assert whole.steps["from_previous"].iloc[1] > 10
    pd.testing.assert_frame_equal(funnel(ctx, given, runner).steps, whole.steps,
                                  check_exact=True)
    assert runner.calls == 2


def test_the_driver_reads_none_of_its_events_values(ctx) -> None:
    """Every section, the segments table included, from the partitions alone: the
    driver's ``Context`` with its activities, times and event columns shuffled across
    events (its cases and case table kept) gives the same insight."""
    runner = Dealt(ctx, 3, 2, seed=31)
    rng = np.random.default_rng(37)
    events = ctx.events.copy()
    for name in events.columns:
        events[name] = events[name].to_numpy()[rng.permutation(len(events))]
    blind = replace(ctx, events=events, act=rng.permutation(ctx.act),
                    t=rng.permutation(ctx.t))
    whole = analyze(ctx)
    dealt = analyze(blind, runner=runner)
    assert all(section.available for section in whole.sections().values())
    assert whole.segments.table["mean_discount"].notna().sum() > 10
    assert dealt.to_dict(max_rows=None) == whole.to_dict(max_rows=None)
    assert dealt.headlines == whole.headlines
    assert analyze(blind).to_dict(max_rows=None) != whole.to_dict(max_rows=None)


def test_a_context_from_codes_equals_the_one_from_events(ctx) -> None:
    """The Dask driver's ``Context`` of assembled codes: activities numbered in order of
    first appearance, whatever the categories' order."""
    events = ctx.events.assign(case_id=ctx.case, activity=ctx.events["activity"].astype(
        "category"))
    assert list(events["activity"].cat.categories) != list(ctx.activity_names)
    built = Context.from_codes(events, ctx.roles, ctx.as_of, ctx.case,
                               events["activity"].array, ctx.t, ctx.cases)
    for name in ("case", "act", "t", "activity_names"):
        assert np.array_equal(getattr(built, name), getattr(ctx, name)), name
    assert built.n_cases == ctx.n_cases and built.notes == ctx.notes
    with pytest.raises(ValueError, match="rows in the case table"):
        Context.from_codes(events, ctx.roles, ctx.as_of, ctx.case, events["activity"].array,
                           ctx.t, ctx.cases.iloc[1:])
