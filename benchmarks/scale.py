"""Benchmark of the Dask path against the single-process path, by log size.

For each size N (events), a simulated log is written as a directory of Parquet files
(chunks of simulated cases with their own case ids). Then, each in a fresh subprocess
(so the peak resident set sizes are that run's own):

- ``dask``: the LocalCluster that ``--cluster local:N`` starts (``--workers``
  single-threaded worker processes, ``scaleout.cluster.dask_client``) reads the
  directory, shuffles by case, validates (keeping each validated partition as a Parquet
  file beside the log: ``read_partitioned(store=...)``), splits, fits the pipeline on
  the driver (on ``--fit-cases`` sampled training cases), joins the history the bundle
  keeps on the driver, joins the cross-case lookups by key and builds every prefix's
  features and labels per partition (counted, then dropped); peak RSS per worker
  (``ru_maxrss`` of each worker process), also per phase (read, shuffle and validate;
  the rest), and of the driver;
- ``single``: today's path, ``canonicalize`` then ``build_training_data`` on the whole
  log in one process (only for sizes up to ``--single-max``: it needs ~1.3 GB per
  million events).

Models are not trained here: this measures the step that outgrew one machine.

    .venv/bin/python benchmarks/scale.py --json                       # 1M, 5M, 20M
    .venv/bin/python benchmarks/scale.py --sizes 1000000 --json

With ``--json`` the last line of stdout is one JSON object: ``dask.N.events_per_s``,
``dask.N.peak_mb_per_worker``, ``single.N.events_per_s`` per size N, and
``largest_events`` (the largest size whose Dask run completed).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

DEFAULT_SIZES = (1_000_000, 5_000_000, 20_000_000)
CHUNK_CASES = 50_000
EVENTS_PER_CASE = 9.6  # the simulator's average, measured on 20k cases


def write_log(folder: Path, n_events: int, seed: int = 1) -> int:
    """Simulated events as Parquet files of ~CHUNK_CASES cases each; returns the events."""
    from features.simulate import simulate_log

    folder.mkdir(parents=True, exist_ok=True)
    cases = math.ceil(n_events / EVENTS_PER_CASE)
    written = 0
    for chunk in range(math.ceil(cases / CHUNK_CASES)):
        n = min(CHUNK_CASES, cases - chunk * CHUNK_CASES)
        events, _ = simulate_log(n_cases=n, seed=seed * 1000 + chunk)
        events["opportunity_id"] = f"C{chunk:04d}-" + events["opportunity_id"].astype(str)
        events.to_parquet(folder / f"part-{chunk:04d}.parquet", index=False)
        written += len(events)
        del events
    return written


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(field: str) -> float:
    """A field of Linux's /proc/self/status in MB (VmHWM, VmRSS); 0 where /proc does not
    say."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _rss_mb() -> float:
    """The resident set now (after a phase: what the worker still holds)."""
    return _status_mb("VmRSS")


def _phase_peak_mb() -> float:
    """Peak resident set since the last ``_reset_phase_peak`` (Linux's VmHWM)."""
    return _status_mb("VmHWM")


def _reset_phase_peak() -> None:
    """Start a new phase's peak (writing 5 to clear_refs resets VmHWM; Linux only)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def run_dask(folder: Path, workers: int, memory_limit: str, fit_cases: int) -> dict:
    from scaleout.build import build_scaled_training_data
    from scaleout.cluster import ClusterSpec, dask_client
    from scaleout.input import read_partitioned
    from training.config import TrainConfig

    # the LocalCluster ``l2c train --cluster local:N`` starts, with its Dask settings
    with dask_client(ClusterSpec(workers=workers, memory_limit=memory_limit)) as client:
        client.run(lambda: None)  # workers up before the clock starts
        client.run(_reset_phase_peak)
        started = time.perf_counter()
        store = folder.with_name(folder.name + "-store")
        log = read_partitioned(folder, client, store=store)
        read_s = time.perf_counter() - started
        read_peaks = client.run(_phase_peak_mb)
        read_held = client.run(_rss_mb)  # what the workers still hold once it is done
        client.run(_reset_phase_peak)
        data = build_scaled_training_data(log, TrainConfig(), fit_cases=fit_cases,
                                          keep_prefixes=False)
        seconds = time.perf_counter() - started
        feature_peaks = client.run(_phase_peak_mb)
        # ru_maxrss is the same high-water mark the phase reset clears: the run's peak
        # is the larger of the two phases'
        peaks = {w: max(p, read_peaks[w], feature_peaks[w])
                 for w, p in client.run(_peak_mb).items()}
        events = log.report.rows_kept
        result = {"events": events, "seconds": seconds, "events_per_s": events / seconds,
                 "read_s": read_s, **{k: v for k, v in data.timings.items()},
                 "partitions": len(log.parts), "peak_mb_per_worker": max(peaks.values()),
                 "peak_mb_workers": sorted(peaks.values()), "driver_peak_mb": _peak_mb(),
                 # the same peak, per phase: read, shuffle and validate; then the rest
                 "read_peak_mb_per_worker": max(read_peaks.values()),
                 "read_peak_mb_workers": sorted(read_peaks.values()),
                 "read_held_mb_workers": sorted(read_held.values()),
                 "features_peak_mb_per_worker": max(feature_peaks.values()),
                 "fit_cases": data.fit_cases}
    shutil.rmtree(store, ignore_errors=True)  # the partitions as files: as large as the log
    return result


def run_single(folder: Path) -> dict:
    import pandas as pd

    from features.log import canonicalize
    from features.mapping import default_mapping
    from training.config import TrainConfig
    from training.data import build_training_data, evaluation_horizon

    started = time.perf_counter()
    raw = pd.read_parquet(folder)
    log = canonicalize(raw, default_mapping(), source=str(folder))
    del raw
    config = TrainConfig()
    data = build_training_data(log, config, evaluation_horizon(log, config), {})
    seconds = time.perf_counter() - started
    events = len(log.events)
    return {"events": events, "seconds": seconds, "events_per_s": events / seconds,
            "prefix_rows": len(data.train_frame) + len(data.test_frame),
            "peak_mb": _peak_mb()}


def _child(args: argparse.Namespace) -> None:
    folder = Path(args.child_folder)
    if args.child == "dask":
        result = run_dask(folder, args.workers, args.memory_limit, args.fit_cases)
    else:
        result = run_single(folder)
    print(json.dumps(result))


def _in_subprocess(kind: str, folder: Path, args: argparse.Namespace,
                   timeout: float | None) -> dict | None:
    command = [sys.executable, __file__, "--child", kind, "--child-folder", str(folder),
               "--workers", str(args.workers), "--memory-limit", args.memory_limit,
               "--fit-cases", str(args.fit_cases)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        print(f"  {kind}: did not finish within {timeout:.0f} s", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"  {kind}: failed ({done.stderr.strip().splitlines()[-1:]})", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="6GB",
                        help="per worker; Dask spills partitions to disk beyond ~60%% of it")
    parser.add_argument("--fit-cases", type=int, default=20_000,
                        help="training cases the driver fits the pipeline on")
    parser.add_argument("--single-max", type=int, default=5_000_000,
                        help="largest size also run on the single-process path")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per run, seconds")
    parser.add_argument("--data", type=Path, default=None,
                        help="where to write the logs (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=["dask", "single"], help=argparse.SUPPRESS)
    parser.add_argument("--child-folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    base = args.data or Path(tempfile.mkdtemp(prefix="l2c-scale-"))
    results: dict = {"dask": {}, "single": {}, "largest_events": 0,
                     "workers": args.workers, "memory_limit": args.memory_limit,
                     "fit_cases": args.fit_cases}
    try:
        for size in sorted(args.sizes):
            folder = base / f"events-{size}"
            started = time.perf_counter()
            written = write_log(folder, size)
            print(f"{size:,}: wrote {written:,} events in {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)
            found = _in_subprocess("dask", folder, args, args.timeout)
            if found is not None:
                results["dask"][str(size)] = found
                results["largest_events"] = max(results["largest_events"], found["events"])
                print(f"  dask: {found['events_per_s']:,.0f} events/s, peak "
                      f"{found['peak_mb_per_worker']:,.0f} MB per worker (read "
                      f"{found['read_peak_mb_per_worker']:,.0f}, features "
                      f"{found['features_peak_mb_per_worker']:,.0f}), driver "
                      f"{found['driver_peak_mb']:,.0f} MB", file=sys.stderr)
            if size <= args.single_max:
                single = _in_subprocess("single", folder, args, args.timeout)
                if single is not None:
                    results["single"][str(size)] = single
                    print(f"  single: {single['events_per_s']:,.0f} events/s, peak "
                          f"{single['peak_mb']:,.0f} MB", file=sys.stderr)
            if args.data is None:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if args.data is None:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(results))
    else:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
