"""Time and peak memory of the whole process insight, on ~1M simulated events and the real logs.

Each measurement runs in a fresh child process (spawned), so its peak resident memory
(Linux VmHWM) is that of one user running the insight: interpreter, libraries, the
read log and everything the analysis allocates (``read_peak_mb``: the peak once the log is
read, before any insight). The log is read first (not timed as
insight: the reader has its own benchmark), then ``analyze`` runs ``--repeat`` times; the
median, min and max are reported. The process map alone is timed as a user of the map
gets it: ``Context.from_log`` + ``process_map``.

    .venv/bin/python benchmarks/insight.py --json
    .venv/bin/python benchmarks/insight.py --events 200000 --logs helpdesk

With ``--dask N`` the simulated log is also analysed on a LocalCluster of N workers
(``l2c insight DIR --cluster local:N``), reporting the driver's peak (the workers
are processes of their own).

With ``--json`` the last line of stdout is one JSON object with ``events_1m``,
``seconds_1m``, ``peak_mb_1m``, ``bpic2012_map_s`` and the per-log figures (with
``--dask``: ``dask_seconds_1m`` and ``dask_driver_peak_mb_1m``). Figures and
method: docs/performance.md (one process) and docs/scale.md (``--dask``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
REAL = {
    "bpic2012": "bpic2012/BPI_Challenge_2012.xes.gz",
    "helpdesk": "helpdesk/helpdesk.xes.gz",
    "traffic_fines": "traffic_fines/traffic_fines_full.csv.gz",
}
EVENTS_PER_CASE = 9.5  # the simulator's mean case length, to size the 1M-event log


def _measure(path: str, mapping: str | None, repeat: int, html: bool,
             queue: mp.Queue) -> None:
    """In the child: read, then time the map and the whole insight; report peak RSS."""
    from features.log import read_log
    from insight import analyze
    from insight.context import Context
    from insight.process_map import process_map
    from insight.report import render_html

    started = time.perf_counter()
    log = read_log(path, mapping)
    read_s = time.perf_counter() - started
    read_peak_kb = _peak_rss_kb()
    map_s, full_s, html_s = [], [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        process_map(Context.from_log(log))
        map_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = analyze(log)
        full_s.append(time.perf_counter() - t0)
        if html:
            t0 = time.perf_counter()
            render_html(result)
            html_s.append(time.perf_counter() - t0)
    queue.put({"events": len(log), "cases": int(log.events["case_id"].nunique()),
               "read_s": read_s, "map_s": map_s, "insight_s": full_s, "html_s": html_s,
               "peak_mb": _peak_rss_kb() / 1024.0, "read_peak_mb": read_peak_kb / 1024.0})


def _measure_dask(folder: str, workers: int, queue: mp.Queue) -> None:
    """In the child: the whole insight on a LocalCluster (``l2c insight DIR --cluster``);
    the peak is the driver's (this process), the workers are processes of their own."""
    from scaleout.cluster import ClusterSpec
    from scaleout.insight import insight_on_cluster

    started = time.perf_counter()
    result = insight_on_cluster(folder, None, ClusterSpec(workers=workers), {})
    queue.put({"events": int(result.overview.figures["events"].iloc[0]),
               "seconds": time.perf_counter() - started,
               "driver_peak_mb": _peak_rss_kb() / 1024.0})


def _peak_rss_kb() -> float:
    """Peak resident memory of this process: VmHWM on Linux (per address space, so it
    starts afresh at the child's exec; ``ru_maxrss`` survives exec and would count the
    parent's memory at the fork), ``ru_maxrss`` elsewhere."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _in_child(target: Any, args: tuple[Any, ...], what: Path) -> dict[str, Any]:
    """``target(*args, queue)`` in a fresh spawned process; what it put on the queue."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(*args, queue))
    child.start()
    result = queue.get()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"measuring {what} failed (exit {child.exitcode})")
    return result


def measure(path: Path, mapping: Path | None, repeat: int, html: bool = True) -> dict[str, Any]:
    result = _in_child(_measure, (str(path), str(mapping) if mapping else None, repeat, html),
                       path)
    for key in ("map_s", "insight_s", "html_s"):
        values = result.pop(key)
        if values:
            result[key] = round(statistics.median(values), 3)
            result[f"{key}_min"] = round(min(values), 3)
            result[f"{key}_max"] = round(max(values), 3)
    result["read_s"] = round(result["read_s"], 2)
    result["peak_mb"] = round(result["peak_mb"], 0)
    result["read_peak_mb"] = round(result["read_peak_mb"], 0)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000,
                        help="approximate size of the simulated log")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per log")
    parser.add_argument("--logs", nargs="*", default=sorted(REAL), help="real logs to run")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--dask", type=int, default=0, metavar="WORKERS",
                        help="also the insight on a LocalCluster of this many workers, "
                             "the simulated log read as a folder of three Parquet files")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()

    from features.io import write_frame
    from features.simulate import simulate_log

    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "repeat": args.repeat}
    with tempfile.TemporaryDirectory() as tmp:
        cases = max(int(args.events / EVENTS_PER_CASE), 1)
        events, _ = simulate_log(cases, seed=1)
        path = Path(tmp) / "sim.parquet"
        write_frame(events, path, case_column="opportunity_id", activity_column="activity",
                    timestamp_column="event_time", resource_column="user")
        sim = measure(path, None, args.repeat)
        if args.dask:
            folder = Path(tmp) / "sim-parts"
            folder.mkdir()
            # the simulator's rows in three files, as an export split by month would be
            for i, rows in enumerate(np.array_split(np.arange(len(events)), 3)):
                write_frame(events.iloc[rows], folder / f"part-{i}.parquet",
                            case_column="opportunity_id", activity_column="activity",
                            timestamp_column="event_time", resource_column="user")
            dask = _in_child(_measure_dask, (str(folder), args.dask), folder)
            print(f"simulated, Dask ({args.dask} workers): {dask}", file=sys.stderr)
            out.update(dask_workers=args.dask, dask_seconds_1m=round(dask["seconds"], 1),
                       dask_driver_peak_mb_1m=round(dask["driver_peak_mb"]))
        del events
    print(f"simulated: {sim}", file=sys.stderr)
    out.update(events_1m=sim["events"], cases_1m=sim["cases"], seconds_1m=sim["insight_s"],
               seconds_1m_min=sim["insight_s_min"], seconds_1m_max=sim["insight_s_max"],
               map_1m_s=sim["map_s"], html_1m_s=sim["html_s"], peak_mb_1m=sim["peak_mb"],
               read_peak_mb_1m=sim["read_peak_mb"], read_1m_s=sim["read_s"])
    for name in args.logs:
        path = args.data / REAL[name]
        if not path.is_file():
            print(f"{name}: {path} is absent, skipped", file=sys.stderr)
            continue
        res = measure(path, ROOT / "benchmarks" / "mappings" / f"{name}.yaml", args.repeat)
        print(f"{name}: {res}", file=sys.stderr)
        out[name] = res
        out[f"{name}_map_s"] = res["map_s"]
        out[f"{name}_insight_s"] = res["insight_s"]
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
