"""The process insight of a Parquet directory read on Dask equals the single-process
insight of the same rows, section by section, headlines and segments included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.log import read_log
from insight import analyze
from l2c.cli import app
from scaleout.cluster import ClusterSpec
from scaleout.insight import (
    OnCluster,
    insight_on_cluster,
    part_cases,
    part_events,
    part_head,
    partition_context,
)
from tests.scaleout.logs import simulated_csv, write_with_parts

SPEC = ClusterSpec(workers=2, processes=False)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A simulated CSV with an unparseable time and a duplicate row, and the same rows
    as a directory of three Parquet files."""
    path, raw = simulated_csv(tmp_path_factory.mktemp("scale-insight"), 400, 17)
    raw.loc[11, "event_time"] = "not a time"
    raw = pd.concat([raw, raw.iloc[[300]]], ignore_index=True)
    parquet = write_with_parts(raw, path)
    return path, parquet


def _same(found, expected) -> None:
    assert found.to_dict(max_rows=None) == expected.to_dict(max_rows=None) | {
        "source": found.source}
    assert found.headlines == expected.headlines
    assert np.array_equal(found.variants.case_variant, expected.variants.case_variant)
    assert np.array_equal(found.rework.case_rework, expected.rework.case_rework)
    for coverage, pmap in expected.detail_maps.items():
        pd.testing.assert_frame_equal(found.detail_maps[coverage].edges, pmap.edges,
                                      check_exact=True)


@pytest.mark.parametrize("by", [None, "region"])
def test_dask_insight_equals_the_single_process_insight(logs, by, monkeypatch):
    csv, parquet = logs
    expected = analyze(read_log(csv), by=by)
    ran = []
    run = OnCluster.run
    monkeypatch.setattr(OnCluster, "run", lambda self, partial, *a, **k: (
        ran.append(partial.__name__), run(self, partial, *a, **k))[1])
    found = insight_on_cluster(parquet, None, SPEC, {"by": by}, partitions=3)
    # the sections split into partials ran on the partitions (maps: whole and details;
    # bottlenecks: the stays, then the stalls against each stage's P90; rework;
    # conformance; the discounts' quotes; the invoices; the variants' hashes; the
    # funnel's milestone times)
    assert ran.count("map_partial") == 3
    assert ran.count("stay_partial") == ran.count("stall_partial") == 1
    assert ran.count("rework_partial") == ran.count("conformance_partial") == 1
    assert ran.count("quote_partial") == ran.count("invoice_partial") == 1
    assert ran.count("hash_partial") == ran.count("milestone_partial") == 1
    assert len(found.bottlenecks.stuck) > 0 and len(found.bottlenecks.stages) > 3
    assert found.overview.figures["events"].iloc[0] == len(read_log(csv).events)
    # every section computed on this log (a test of nothing would pass too)
    assert all(section.available for section in found.sections().values())
    assert len(found.process_map.edges) > 10 and len(found.variants.table) > 10
    _same(found, expected)
    if by is not None:
        assert set(found.by_segment) == set(expected.by_segment)
        for value, sub in expected.by_segment.items():
            _same(found.by_segment[value], sub)


def test_a_partition_sends_the_driver_one_row_per_case_and_no_text_per_event(logs):
    csv, _ = logs
    log = read_log(csv)
    ctx = partition_context(log.events, log.mapping.roles)
    cases, events, head = part_cases(ctx), part_events(ctx), part_head(ctx)
    assert len(cases) == log.events["case_id"].nunique()
    assert cases["events"].sum() == head.lengths.sum() == len(events) == len(log.events)
    assert {"region", "rep", "value"} <= set(cases.columns)
    assert "case_id" not in events.columns
    for name, names in head.categories.items():  # the head names what the events code
        assert list(names) == list(events[name].cat.categories)
    for name, dtype in events.dtypes.items():
        assert isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_numeric_dtype(
            dtype) or pd.api.types.is_datetime64_any_dtype(dtype), (name, dtype)


def test_cli_insight_on_a_local_cluster(logs, tmp_path, monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    _, parquet = logs
    out = tmp_path / "insight.html"
    result = CliRunner().invoke(app, ["insight", str(parquet), "--cluster", "local:2",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Dask cluster with 2 worker(s); dashboard: http://" in result.output
    assert "cases and" in result.output and out.stat().st_size > 10_000
    result = CliRunner().invoke(app, ["insight", str(tmp_path / "absent.parquet"), "--cluster",
                                      "local:1"])
    assert result.exit_code == 2 and "no such file or directory" in result.output
    assert "Traceback" not in result.output


def test_the_driver_assembles_the_events_in_read_logs_order_once(logs):
    """Partition by partition at their final rows: the same events and case table as
    ``read_log`` and its ``Context``."""
    from insight.context import Context
    from scaleout.cluster import dask_client
    from scaleout.input import read_partitioned
    from scaleout.insight import EVENT_COLUMNS, assembled, partition_context

    csv, parquet = logs
    log = read_log(csv)
    with dask_client(SPEC) as client:
        scaled = read_partitioned(parquet, client, None, partitions=3)
        contexts = scaled.map(partition_context, scaled.mapping.roles)
        events, cases, numbers = assembled(client, contexts)
    expected = log.events[[c for c in EVENT_COLUMNS if c in log.events.columns]]
    assert len(numbers) == 3 and sorted(np.concatenate(numbers)) == list(range(len(cases)))
    for name in expected.columns:
        found = events[name]
        if isinstance(found.dtype, pd.CategoricalDtype):
            found = found.astype(object).where(found.notna(), None)
            pd.testing.assert_series_equal(found, expected[name].astype(object).where(
                expected[name].notna(), None), check_names=False)
        else:
            pd.testing.assert_series_equal(found, expected[name], check_names=False)
    pd.testing.assert_frame_equal(cases.reset_index(drop=True),
                                  Context.from_log(log).cases)
    assert np.array_equal(np.diff(events["case_id"].to_numpy()) >= 0,
                          np.ones(len(events) - 1, dtype=bool))


def test_a_coded_column_is_filled_from_partitions_with_their_own_names():
    from scaleout.insight import _Column

    union = pd.Index(["Lead", "Proposal", "Won"])
    first = pd.Series(["Won", None, "Lead"], dtype="category")
    second = pd.Series(["Proposal", "Won"], dtype="category")
    column = _Column(first, 5, union)
    column.fill(np.array([4, 0, 2]), first)
    column.fill(np.array([1, 3]), second)
    found = column.series()
    assert list(found.cat.categories) == list(union)
    assert found.astype(object).where(found.notna(), None).tolist() == [
        None, "Proposal", "Lead", "Won", "Won"]
