"""Ours against each peer over many model seeds, on one log of the real-log benchmark.

On a small log the model's own seed (which rows and columns each tree samples) moves a
feature set's figure as much as the gap between feature sets: on Helpdesk one L1
LightGBM's MAE ranges over ~0.3 days from seed to seed, so two seeds of
``benchmarks/real_logs.py`` can rank the peers either way. This script refits the same
models as that benchmark (ours: ``training.fit.fit_target``, the shipped model; a peer:
``real_logs.fit_peer``, the same model class on its features) on the same split,
prefixes and labels at every seed asked for, and gives each feature set's mean and
standard deviation, and, paired by seed, ours - peer with its 95 % t-interval (above
zero: ours is higher, which for an MAE means worse).

    .venv/bin/python benchmarks/model_seeds.py --log helpdesk --seeds $(seq 0 14) --json

Needs the optional ``benchmark`` extra for the peers (``--peers`` none: ours alone).
Results: docs/benchmarks.md ("Helpdesk over fifteen seeds").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from benchmarks.real_logs import (  # noqa: E402
    BENCH_TARGETS,
    DEFAULT_DATA_DIR,
    LOGS,
    PEERS,
    available_peers,
    build_named_peer,
    fit_peer,
    load,
    main_metric,
    prepare,
    run_ours,
)
from training.config import TrainConfig  # noqa: E402


def paired_interval(ours: list[float], peer: list[float]) -> dict[str, float]:
    """Mean of ours - peer over the seeds and its 95 % t-interval (NaN under 2 seeds)."""
    diff = np.asarray(ours) - np.asarray(peer)
    out = {"mean": float(diff.mean()), "ci95_low": float("nan"), "ci95_high": float("nan")}
    if len(diff) > 1:
        half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
        out["ci95_low"], out["ci95_high"] = out["mean"] - half, out["mean"] + half
    return out


def run(log_name: str, target_name: str, seeds: list[int], peer_names: list[str],
        data_dir: Path = DEFAULT_DATA_DIR, max_cases: int | None = None) -> dict[str, Any]:
    """Every feature set's figure at every seed, and the paired summaries."""
    spec = LOGS[log_name]
    target = BENCH_TARGETS[target_name]
    prep = prepare(spec, load(spec, data_dir, max_cases), TrainConfig(learning_curve=False))
    peers = {name: build_named_peer(prep, name, 0) for name in peer_names}
    figures: dict[str, list[float]] = {"ours": [], **{name: [] for name in peers}}
    for seed in seeds:
        started = time.perf_counter()
        config = TrainConfig(learning_curve=False, seed=seed)
        figures["ours"].append(float(run_ours(prep, target, config)[0]["ours"]))
        for name, peer in peers.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pred, y, _ = fit_peer(prep, peer, target, config)
            figures[name].append(float(main_metric(target, y, pred)))
        print(f"seed {seed} ({time.perf_counter() - started:.0f} s): "
              + ", ".join(f"{n} {v[-1]:.4f}" for n, v in figures.items()), file=sys.stderr)
    return {
        "log": log_name, "target": target_name, "metric": target.main_metric, "seeds": seeds,
        "per_seed": figures,
        "mean": {n: float(np.mean(v)) for n, v in figures.items()},
        "sd": {n: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")
               for n, v in figures.items()},
        "ours_minus_peer": {n: paired_interval(figures["ours"], figures[n]) for n in peers},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", choices=list(LOGS), default="helpdesk")
    parser.add_argument("--target", choices=list(BENCH_TARGETS), default=None,
                        help="default: the log's first target")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--peers", nargs="*", choices=list(PEERS), default=list(PEERS),
                        help="peers to refit at each seed (none: ours alone)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--max-cases", type=int, default=None,
                        help="keep only the earliest N cases (smoke runs)")
    parser.add_argument("--json", action="store_true", help="one JSON line at the end")
    args = parser.parse_args(argv)
    spec = LOGS[args.log]
    if not (args.data_dir / spec.file).is_file():
        print(f"missing log file {args.data_dir / spec.file}", file=sys.stderr)
        return 2
    target = args.target or spec.targets[0]
    out = run(args.log, target, args.seeds, available_peers(args.peers) if args.peers else [],
              args.data_dir, args.max_cases)
    print(f"{args.log}, {target} ({out['metric']}), {len(args.seeds)} seeds")
    for name in out["per_seed"]:
        line = f"  {name:<16} mean {out['mean'][name]:.4f}  sd {out['sd'][name]:.4f}"
        if name in out["ours_minus_peer"]:
            d = out["ours_minus_peer"][name]
            line += (f"  ours - {name}: {d['mean']:+.4f} "
                     f"[{d['ci95_low']:+.4f}, {d['ci95_high']:+.4f}]")
        print(line)
    if args.json:
        print(json.dumps(out, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
