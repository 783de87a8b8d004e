"""Feature building on the real logs: ours against skpm's window encodings, time and memory.

Issue 22's third quality target: our feature building at least 5x faster than the
fastest peer of the same quality on every log, with at most a third of its peak memory.
The fastest peers are skpm's window encodings (pm4py's and skpm's aggregation are
10-40x slower than ours). On each log's split of ``benchmarks/real_logs.py``:

- ours: ``PrefixPipeline`` (as ``l2c train`` configures it) fit on the cut training
  events, then transform of the whole log (``Prepared.features_s``);
- each peer: ``build_skpm_peer`` (fit on the cut training events, transform of the
  training and of the test events).

Times: the builds alternate within each repetition (a burst of load on this shared
machine hits all of them), each repetition starting with a different one, after one
warm-up build each; medians with min-max, and per repetition the fastest peer's time
over ours. Peak memory: ``tracemalloc``'s peak over one build of each, in separate
passes (tracing slows Python code, so these builds are not timed).

``--save-digests FILE`` / ``--check-digests FILE``: a digest of every column (dtype,
categories, the values' bytes) of our frames on the three logs and on the simulator's
default log (20,000 cases, seed 1), to show a change leaves the features identical.

    .venv/bin/python benchmarks/feature_speed.py --repeats 5 --json
    .venv/bin/python benchmarks/feature_speed.py --logs bpic2012 --no-peers --profile

Needs skpm (the ``benchmark`` extra) for the peers. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import json
import os
import pstats
import statistics
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.base import clone  # noqa: E402

from benchmarks.real_logs import (  # noqa: E402
    DEFAULT_DATA_DIR,
    LOGS,
    Prepared,
    build_skpm_peer,
    load,
    prepare,
)
from benchmarks.skpm_peer import skpm_available  # noqa: E402
from features.log import canonicalize  # noqa: E402
from features.mapping import default_mapping  # noqa: E402
from features.pipeline import PrefixPipeline  # noqa: E402
from features.simulate import simulate_log  # noqa: E402
from features.split import temporal_split  # noqa: E402
from training.config import TrainConfig  # noqa: E402

PEERS = ("skpm_window", "skpm_window_abs")
MIB = 2**20
SIMULATED = {"cases": 20_000, "seed": 1}


class Subject:
    """One log's split and our pipeline's settings: what every build starts from."""

    def __init__(self, prep: Prepared, events: pd.DataFrame, pipeline: PrefixPipeline) -> None:
        self.prep = prep
        self.events = events
        self.pipeline = pipeline

    def ours(self) -> pd.DataFrame:
        """What ``training.data.build_training_data`` times as ``features_s``."""
        return clone(self.pipeline).fit(self.prep.split.train).transform(self.events)

    def peer(self, name: str) -> Callable[[], Any]:
        return lambda: build_skpm_peer(self.prep, name)


def subject(name: str, data_dir: Path) -> Subject:
    spec = LOGS[name]
    log = load(spec, data_dir, None)
    prep = prepare(spec, log, TrainConfig())
    pipeline = prep.data.pipeline
    # only the split and the settings are needed: let the benchmark's matrices go
    prep.data.train_frame = prep.data.test_frame = pd.DataFrame()
    return Subject(prep, log.events, pipeline)


def simulated_subject() -> tuple[pd.DataFrame, pd.DataFrame, PrefixPipeline]:
    """The simulator's default log, split and configured as ``l2c train`` does."""
    mapping = default_mapping()
    events = canonicalize(simulate_log(n_cases=SIMULATED["cases"],
                                       seed=SIMULATED["seed"])[0], mapping).events
    config = TrainConfig()
    split = temporal_split(events, config.test_fraction, None)
    pipeline = PrefixPipeline(roles=mapping.roles, max_prefix_len=config.max_prefix_len,
                              thin_after=config.thin_after, thin_step=config.thin_step,
                              min_frequency=config.min_frequency)
    return split.train, events, pipeline


# --------------------------------------------------------------------- measuring
def timed(build: Callable[[], Any]) -> float:
    gc.collect()
    started = time.perf_counter()
    result = build()
    elapsed = time.perf_counter() - started
    del result
    return elapsed


def peak_mib(build: Callable[[], Any]) -> float:
    """tracemalloc's peak over one build (numpy and pandas report their buffers)."""
    gc.collect()
    tracemalloc.start()
    try:
        result = build()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak / MIB


def spread(values: list[float], digits: int = 3) -> dict[str, float]:
    return {"median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits)}


def measure(name: str, data_dir: Path, repeats: int, peers: list[str],
            memory: bool) -> dict[str, Any]:
    subj = subject(name, data_dir)
    builds: dict[str, Callable[[], Any]] = {"ours": subj.ours}
    builds.update({peer: subj.peer(peer) for peer in peers})
    names = list(builds)
    for label in names:  # warm-up: imports, caches, first-touch of pages
        timed(builds[label])
    times: dict[str, list[float]] = {label: [] for label in names}
    for rep in range(repeats):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for label in order:
            times[label].append(timed(builds[label]))
    out: dict[str, Any] = {
        "events": len(subj.events), "train_events": len(subj.prep.split.train),
        "max_prefix_len": subj.prep.max_prefix_len, "repeats": repeats,
        "seconds": {label: spread(values) for label, values in times.items()},
        "seconds_each": {label: [round(v, 3) for v in values] for label, values in times.items()},
    }
    if peers:
        ratios = [min(times[p][i] for p in peers) / times["ours"][i] for i in range(repeats)]
        out["fastest_peer_over_ours"] = spread(ratios, 2)
    if memory:
        out["peak_mib"] = {label: round(peak_mib(builds[label]), 1) for label in names}
        if peers:
            fastest = min(peers, key=lambda p: statistics.median(times[p]))
            out["fastest_peer"] = fastest
            out["peak_ours_over_fastest_peer"] = round(
                out["peak_mib"]["ours"] / out["peak_mib"][fastest], 3)
    return out


def profile(name: str, data_dir: Path, top: int) -> None:
    subj = subject(name, data_dir)
    subj.ours()  # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    subj.ours()
    profiler.disable()
    print(f"--- {name}: our build, cumulative")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)
    print(f"--- {name}: our build, own time")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


# ------------------------------------------------------------------ identity check
def column_digest(column: pd.Series) -> str:
    """The dtype, the categories and the bytes of the values (NaN payloads and signed
    zeros included): equal digests mean identical columns."""
    digest = hashlib.sha256(repr(column.dtype).encode())  # text: its storage too
    if isinstance(column.dtype, pd.CategoricalDtype):
        digest.update(json.dumps([str(c) for c in column.cat.categories]).encode())
        digest.update(np.ascontiguousarray(column.cat.codes.to_numpy()).tobytes())
    elif isinstance(column.dtype, pd.DatetimeTZDtype):
        digest.update(column.array.asi8.tobytes())
    elif isinstance(column.dtype, np.dtype) and column.dtype.kind in "biuf":
        digest.update(np.ascontiguousarray(column.to_numpy()).tobytes())
    else:
        digest.update(pd.util.hash_pandas_object(column, index=False).to_numpy().tobytes())
        digest.update(column.isna().to_numpy().tobytes())
    return digest.hexdigest()


def frame_digests(frame: pd.DataFrame) -> dict[str, Any]:
    return {"rows": len(frame), "columns": list(frame.columns),
            "digests": {c: column_digest(frame[c]) for c in frame.columns}}


def all_digests(logs: list[str], data_dir: Path) -> dict[str, Any]:
    out = {}
    for name in logs:
        frame = subject(name, data_dir).ours()
        out[name] = frame_digests(frame)
        print(f"{name}: {len(frame):,} rows, {frame.shape[1]} columns", file=sys.stderr)
        del frame
    train, events, pipeline = simulated_subject()
    frame = pipeline.fit(train).transform(events)
    out["simulated"] = frame_digests(frame)
    print(f"simulated: {len(frame):,} rows, {frame.shape[1]} columns", file=sys.stderr)
    return out


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    found = []
    for log, old in before.items():
        new = after.get(log)
        if new is None:
            found.append(f"{log}: not built")
            continue
        if old["rows"] != new["rows"] or old["columns"] != new["columns"]:
            found.append(f"{log}: rows or columns differ ({old['rows']} x "
                         f"{len(old['columns'])} -> {new['rows']} x {len(new['columns'])})")
        found += [f"{log}: column {c!r} differs" for c in old["columns"]
                  if c in new["digests"] and new["digests"][c] != old["digests"][c]]
    return found


# ------------------------------------------------------------------------ output
def report(results: dict[str, dict[str, Any]]) -> None:
    for name, res in results.items():
        sec = res["seconds"]
        line = ", ".join(f"{label} {s['median']:.2f} s ({s['min']:.2f}-{s['max']:.2f})"
                         for label, s in sec.items())
        print(f"{name} ({res['events']:,} events, {res['repeats']} repetitions): {line}")
        if "fastest_peer_over_ours" in res:
            r = res["fastest_peer_over_ours"]
            print(f"  fastest peer / ours per repetition: {r['median']:.2f}x "
                  f"({r['min']:.2f}-{r['max']:.2f})")
        if "peak_mib" in res:
            peaks = ", ".join(f"{label} {v:,.0f} MiB" for label, v in res["peak_mib"].items())
            ratio = res.get("peak_ours_over_fastest_peer")
            print(f"  peak memory: {peaks}" + (f"; ours / {res['fastest_peer']} = {ratio:.2f}"
                                               if ratio is not None else ""))


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", nargs="+", default=list(LOGS), choices=list(LOGS))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--no-peers", action="store_true", help="time ours only")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile one build of ours per log instead of timing")
    parser.add_argument("--top", type=int, default=40, help="profile lines shown")
    parser.add_argument("--save-digests", type=Path, help="write our frames' column digests")
    parser.add_argument("--check-digests", type=Path,
                        help="compare our frames with digests saved before a change")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    warnings.simplefilter("ignore")  # sklearn's chatter inside skpm
    if args.save_digests or args.check_digests:
        digests = all_digests(args.logs, args.data_dir)
        if args.save_digests:
            args.save_digests.write_text(json.dumps(digests, indent=1))
        if args.check_digests:
            found = differences(json.loads(args.check_digests.read_text()), digests)
            print("\n".join(found) if found else "identical: every column of every frame")
            return 1 if found else 0
        return 0
    if args.profile:
        for name in args.logs:
            profile(name, args.data_dir, args.top)
        return 0
    peers = [] if args.no_peers or not skpm_available() else list(PEERS)
    results = {}
    for name in args.logs:
        results[name] = measure(name, args.data_dir, args.repeats, peers, not args.no_memory)
        report({name: results[name]})
    if args.json:
        print(json.dumps({"load_average": [round(x, 2) for x in os.getloadavg()],
                          "logs": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
