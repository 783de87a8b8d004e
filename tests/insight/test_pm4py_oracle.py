"""The process map and variants equal pm4py's on the three real logs (the oracle).

pm4py is the optional ``benchmark`` extra (AGPL: never imported by the product); the
test is skipped without it or without ``../shared/data``. Both read the same canonical
events (our reader, the logs' benchmark mappings): pm4py sorts by case and time with a
stable multi-column sort, so events at the same time keep the file's order in both.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from features.log import read_log
from insight.context import Context
from insight.process_map import compute_variants, process_map

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
LOGS = {
    "bpic2012": "bpic2012/BPI_Challenge_2012.xes.gz",
    "helpdesk": "helpdesk/helpdesk.xes.gz",
    "traffic_fines": "traffic_fines/traffic_fines_full.csv.gz",
}
KEYS = {"case_id_key": "case_id", "activity_key": "activity", "timestamp_key": "timestamp"}


@pytest.fixture(scope="module", params=sorted(LOGS))
def real(request):
    pm4py = pytest.importorskip("pm4py", reason="pm4py is the optional 'benchmark' extra")
    path = DATA / LOGS[request.param]
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared data folder is not beside the project)")
    log = read_log(path, ROOT / "benchmarks" / "mappings" / f"{request.param}.yaml")
    ctx = Context.from_log(log)
    frame = log.events[["case_id", "activity", "timestamp"]].copy()
    with contextlib.redirect_stdout(io.StringIO()):  # pm4py's licence banner
        dfg, starts, ends = pm4py.discover_dfg(frame, **KEYS)
        perf, _, _ = pm4py.discover_performance_dfg(frame, **KEYS)
        variants = pm4py.get_variants(frame, **KEYS)
    return ctx, dfg, starts, ends, perf, variants


def test_directly_follows_counts_equal_pm4py(real) -> None:
    ctx, dfg, starts, ends, _, _ = real
    pm = process_map(ctx)
    ours = {(s, t): int(n) for s, t, n in pm.edges[["source", "target", "events"]].to_numpy()}
    assert ours == {k: int(v) for k, v in dfg.items()}
    assert dict(pm.starts.to_numpy()) == {k: int(v) for k, v in starts.items()}
    assert dict(pm.ends.to_numpy()) == {k: int(v) for k, v in ends.items()}


def test_edge_durations_equal_pm4py_performance_dfg(real) -> None:
    ctx, _, _, _, perf, _ = real
    edges = process_map(ctx).edges.set_index(["source", "target"])
    assert set(edges.index) == set(perf)
    keys = list(perf)
    for ours_col, theirs in (("mean_days", "mean"), ("median_days", "median"),
                             ("total_days", "sum")):
        ours = edges.loc[keys, ours_col].to_numpy() * 86400.0
        expected = np.array([perf[k][theirs] for k in keys], dtype=float)
        np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-3, err_msg=ours_col)


def test_variant_counts_equal_pm4py(real) -> None:
    ctx, _, _, _, _, variants = real
    table = compute_variants(ctx).table
    ours = dict(zip(table["activities"], table["cases"].astype(int), strict=True))
    theirs = {tuple(k): int(v if np.isscalar(v) else len(v)) for k, v in variants.items()}
    assert ours == theirs
    assert table["cases"].sum() == ctx.n_cases
