"""The Dask path reads and featurises a log exactly as the single-process path does.

A LocalCluster of 2 single-threaded workers (threads of this process, so it starts in
well under a second; the tasks still go through the distributed scheduler, the p2p
shuffle and serialisation of futures).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.log import canonicalize, read_log
from features.mapping import default_mapping
from features.pipeline import PrefixPipeline
from features.prefixes import sort_key
from features.simulate import simulate_log
from scaleout.build import build_scaled_training_data, featurize
from scaleout.cluster import ClusterError, ClusterSpec, dask_client
from scaleout.history import needs
from scaleout.input import read_partitioned, scatter_events
from scaleout.prefixes import for_workers
from tests.scaleout.logs import simulated_csv, write_with_parts
from training.config import TrainConfig
from training.data import build_training_data, evaluation_horizon


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with dask_client(ClusterSpec(workers=2, processes=False)) as c:
        yield c


@pytest.fixture(scope="module")
def dirty_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated CSV with an unparseable time, a negative amount and two exact
    duplicates, and the same rows as a directory of three Parquet files."""
    path, raw = simulated_csv(tmp_path_factory.mktemp("scale"), 500, 5)
    raw.loc[7, "event_time"] = "31/02/2024 10:00"
    raw.loc[raw.index[raw["amount"].notna()][3], "amount"] = "-5"
    raw = pd.concat([raw, raw.iloc[[100, 2000]]], ignore_index=True)
    write_with_parts(raw, path)
    return path


def _arrow_pool() -> str:
    import pyarrow as pa

    return pa.default_memory_pool().backend_name


def _in_log_order(frame: pd.DataFrame) -> pd.DataFrame:
    order = np.lexsort([frame["prefix_len"].to_numpy(), sort_key(frame["case_id"])])
    return frame.iloc[order].reset_index(drop=True)


def _assert_same_bits(found: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal frames, and float columns equal to the last bit (NaN and -0.0 included)."""
    pd.testing.assert_frame_equal(found, expected, check_exact=True)
    for column in expected.columns:
        if pd.api.types.is_float_dtype(expected[column]):
            assert np.array_equal(found[column].to_numpy().view("int64"),
                                  expected[column].to_numpy().view("int64")), column


@pytest.mark.parametrize("which", ["csv", "parquet", "parquet, partitions stored",
                                   "csv.gz (read by the driver)"])
def test_quarantine_books_equal_the_single_process_reader(client, dirty_log, which, tmp_path):
    source = dirty_log if which == "csv" else dirty_log.parent / "parquet"
    if which.startswith("csv.gz"):
        source = tmp_path / "log.csv.gz"
        source.write_bytes(gzip.compress(dirty_log.read_bytes()))
    single = read_log(dirty_log)
    store = tmp_path / "store" if "stored" in which else None
    scaled = read_partitioned(source, client, partitions=3, blocksize=40_000, store=store)
    if store is not None:
        assert len(list(store.glob("*.parquet"))) == 3
    # the workers' Arrow memory comes from the allocator that gives it back (workers.py)
    assert set(client.run(_arrow_pool).values()) == {"system"}
    report = scaled.report
    assert report.rows_in == single.report.rows_in == len(single.events) + 4
    assert report.rows_kept + report.rows_quarantined == report.rows_in
    assert report.quarantined == single.report.quarantined
    assert set(report.quarantined) == {"unparseable_timestamp", "negative_amount",
                                       "duplicate_event"}
    quarantine = scaled.quarantined_rows()
    expected = single.quarantine
    assert quarantine["source_row"].tolist() == expected["source_row"].tolist()
    assert quarantine["quarantine_reason"].tolist() == expected["quarantine_reason"].tolist()
    assert quarantine["quarantine_detail"].tolist() == expected["quarantine_detail"].tolist()
    # the first rows' messages, as the single reader gives them (up to the source name)
    assert report.examples["duplicate_event"] == [
        m.replace(str(dirty_log), str(source)) for m in single.report.examples["duplicate_event"]]
    # the same events; text in pandas' str dtype either way (small partitions keep
    # Python storage, as canonicalize gives a request: features.schema.text_dtype)
    events = scaled.events()
    pd.testing.assert_frame_equal(
        events.sort_values("source_row").reset_index(drop=True),
        single.events.sort_values("source_row").reset_index(drop=True), check_dtype=False)
    assert all(found == "str" or found == expected for found, expected in zip(
        events.dtypes, single.events.dtypes, strict=True))


@pytest.mark.parametrize("stored", [False, True])
def test_training_features_are_bit_identical_cross_case_included(client, dirty_log, stored,
                                                                 tmp_path):
    config = TrainConfig()
    single = read_log(dirty_log)
    expected = build_training_data(single, config, evaluation_horizon(single, config), {})
    store = tmp_path if stored else None
    scaled = build_scaled_training_data(read_partitioned(dirty_log, client, partitions=3,
                                                         store=store), config)
    assert scaled.split_time == expected.split.split_time
    assert scaled.fit_cases == expected.split.train["case_id"].nunique()
    parts = client.gather(scaled.train)
    frame = pd.concat([p.frame for p in parts], ignore_index=True)
    labels = pd.concat([p.labels for p in parts], ignore_index=True)
    blocks = np.concatenate([p.blocks for p in parts])
    order = np.lexsort([frame["prefix_len"].to_numpy(), sort_key(frame["case_id"])])
    _assert_same_bits(frame.iloc[order].reset_index(drop=True), expected.train_frame)
    assert "account_mean_payment_delay_days" in frame  # the cross-case features are there
    assert frame["rep_mean_cycle_days"].notna().sum() > 100
    pd.testing.assert_frame_equal(labels.iloc[order].reset_index(drop=True),
                                  expected.train_labels, check_exact=True,
                                  check_dtype=False)  # case_id: str of either storage
    assert np.array_equal(blocks[order], expected.blocks)
    test = pd.concat([p.frame for p in client.gather(scaled.test)], ignore_index=True)
    _assert_same_bits(_in_log_order(test), expected.test_frame)
    # the bundle's history is the whole log's, as refresh_history(whole log) sets it
    expected.pipeline.refresh_history(single.events)
    pd.testing.assert_frame_equal(scaled.pipeline.encoders_[-1].history_,
                                  expected.pipeline.encoders_[-1].history_, check_exact=True)
    # workers get the pipeline without any history; the key join's pieces are gone
    assert len(for_workers(scaled.pipeline).encoders_[-1].facts_) == 0
    assert len(scaled.pipeline.encoders_[-1].facts_) == single.events["case_id"].nunique()
    if stored:
        assert not list(tmp_path.glob("keyjoin-*")) and list(tmp_path.glob("events-*"))


def test_the_key_join_asks_for_what_the_encoder_reads():
    """The lookups come from running the encoder's own rule, at the times it asks."""
    encoder = _PIPELINE.encoders_[-1]
    asked = needs(encoder)
    recent = int(encoder.recent_days * 86400)
    assert set(asked["rep"]) == {("opened", 0), ("closed", 0), ("opened", -recent),
                                 ("decided", 0), ("done", 0)}
    assert set(asked["region"]) == {("opened", 0), ("closed", 0)}
    assert set(asked["account"]) == {("opened", 0), ("decided", 0), ("paid", 0)}


def test_open_case_scoring_features_equal_transform_last_only(client):
    mapping = default_mapping()
    log = canonicalize(simulate_log(n_cases=300, seed=8)[0], mapping)
    pipeline = PrefixPipeline(roles=mapping.roles).fit(log.events)
    parts = scatter_events(client, log.events, mapping, partitions=4)
    found = pd.concat(client.gather(featurize(client, parts.parts, pipeline, last_only=True)),
                      ignore_index=True)
    _assert_same_bits(_in_log_order(found), pipeline.transform(log.events, last_only=True))


def test_a_log_without_reps_joins_only_the_keys_it_has(client):
    """Helpdesk-like: accounts but no rep. The encoder builds no rep columns, the key
    join neither routes nor asks for the rep, and the features still equal the single
    process's."""
    mapping = default_mapping()
    events = canonicalize(simulate_log(n_cases=200, seed=9)[0], mapping).events
    events["rep"] = pd.Series(pd.NA, index=events.index, dtype=events["rep"].dtype)
    pipeline = PrefixPipeline(roles=mapping.roles).fit(events)
    encoder = pipeline.encoders_[-1]
    assert "rep" not in encoder.keys_ and "rep" not in needs(encoder)
    assert not [n for n in pipeline.feature_names_out_ if n.startswith("rep_")]
    parts = scatter_events(client, events, mapping, partitions=3)
    found = pd.concat(client.gather(featurize(client, parts.parts, pipeline)),
                      ignore_index=True)
    expected = pipeline.transform(events)
    assert expected["account_prior_cases"].gt(0).any()
    _assert_same_bits(_in_log_order(found), expected)


_MAPPING = default_mapping()
_EVENTS = canonicalize(simulate_log(n_cases=150, seed=21)[0], _MAPPING).events
_PIPELINE = PrefixPipeline(roles=_MAPPING.roles).fit(_EVENTS)


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.2, 0.9), seed=st.integers(0, 10_000))
def test_dask_features_never_read_events_after_a_prefix_end(client, cut, seed):
    """Change everything after a time (drop some later events, rename the rep and the
    activity of others, in any case): no prefix that ended before it changes, cross-case
    features included, though other partitions hold the changed cases."""
    events = _EVENTS
    times = events["timestamp"]
    t = times.min() + (times.max() - times.min()) * cut
    later = (times > t).to_numpy()
    rng = np.random.default_rng(seed)
    changed = events.copy()
    flip = later & (rng.random(len(events)) < 0.5)
    changed.loc[flip, "rep"] = "someone else"
    changed.loc[flip, "activity"] = "Send Invoice"
    changed = changed[~(later & (rng.random(len(events)) < 0.3))].reset_index(drop=True)

    def features(frame: pd.DataFrame) -> pd.DataFrame:
        parts = scatter_events(client, frame, _MAPPING, partitions=3)
        out = pd.concat(client.gather(featurize(client, parts.parts, _PIPELINE)),
                        ignore_index=True)
        return _in_log_order(out[out["prefix_end"] <= t])

    _assert_same_bits(features(changed), features(events))


def test_cluster_options_are_checked(monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    assert ClusterSpec.from_options(None, None) is None
    assert ClusterSpec.from_options("local:3", None).workers == 3
    assert ClusterSpec.from_options(None, "tcp://10.0.0.1:8786").address == "tcp://10.0.0.1:8786"
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://sched:8786")
    assert ClusterSpec.from_options(None, None).address == "tcp://sched:8786"
    with pytest.raises(ClusterError, match="not both"):
        ClusterSpec.from_options("local:2", None)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
    for bad in ("local", "local:0", "remote:2"):
        with pytest.raises(ClusterError, match="local:N"):
            ClusterSpec.from_options(bad, None)
    with pytest.raises(ClusterError, match="tcp://HOST:8786"):
        ClusterSpec.from_options(None, "sched:8786")
