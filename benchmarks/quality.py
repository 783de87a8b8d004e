"""Benchmark of model quality against baselines and the simulator's oracle.

Simulates a log (fixed seed) into a temporary folder, with its truth file beside it,
prepares the training data as ``l2c train`` does (temporal split, evaluation horizon,
prefix features) and fits the three targets with ``training.fit.fit_target``; no MLflow
run is written. Every figure is measured on the temporal test set.

    .venv/bin/python benchmarks/quality.py                 # 20k cases, seed 7
    .venv/bin/python benchmarks/quality.py --cases 5000 --seed 3 --json
    .venv/bin/python benchmarks/quality.py --sizes 5000,20000,100000 --seeds 1,2,3 --json

With ``--json`` the last line of stdout is one JSON object with the headline figures;
with ``--sizes`` it also holds ``by_size.<N>``: per size, the worst seed's AUC ratio to
the oracle (overall and on prefixes of length 1-2, where also to the at-creation oracle,
see ``early_ratios``), ECE and the oracle's own ECE, the regressions' MAE ratio to their
baseline and 10-90% coverage, and the kinds of model shipped.
Targets: win/loss AUC at least 0.95 x the oracle's, ECE at most 0.03, AUC and log loss
better than both baselines (stage win rate, logistic regression); both regressions'
MAE below their baseline's; 10-90% intervals covering 75-85% of test prefixes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from features.io import sidecar_path, write_frame  # noqa: E402
from features.simulate import simulate_log  # noqa: E402
from models.targets import TARGETS  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import prepare_training_data  # noqa: E402
from training.fit import TargetResult, fit_target  # noqa: E402

DEFAULT_CASES = 20_000
DEFAULT_SEED = 7
TARGET_AUC_RATIO = 0.95
TARGET_ECE = 0.03
TARGET_COVERAGE = (0.75, 0.85)

err = Console(stderr=True)


def simulate_to(folder: Path, cases: int, seed: int) -> Path:
    """Write a simulated CSV log and its truth file, as ``l2c simulate`` does."""
    path = folder / "l2c.csv"
    events, truth = simulate_log(n_cases=cases, seed=seed)
    write_frame(events, path, case_column="opportunity_id", activity_column="activity",
                timestamp_column="event_time", resource_column="user")
    truth.to_csv(sidecar_path(path, "truth"), index=False)
    return path


def run(cases: int, seed: int) -> tuple[dict[str, TargetResult], dict[str, float]]:
    timings: dict[str, float] = {}
    config = TrainConfig(learning_curve=False)  # the sweep measures the shipped models
    with tempfile.TemporaryDirectory(prefix="l2c-quality-") as tmp:
        started = time.perf_counter()
        path = simulate_to(Path(tmp), cases, seed)
        timings["simulate"] = time.perf_counter() - started
        started = time.perf_counter()
        data = prepare_training_data(path, None, config, list(TARGETS.values()))
        timings["prepare"] = time.perf_counter() - started
    results = {}
    for name, target in TARGETS.items():
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn/LightGBM chatter on feature names
            results[name] = fit_target(data, target, config)
        timings[name] = time.perf_counter() - started
    test = results["outcome"].test
    if data.truth is not None and "p_win_at_creation" in data.truth:
        test["p_creation"] = data.truth["p_win_at_creation"].reindex(test["case_id"]).to_numpy()
    return results, timings


def summary(results: dict[str, TargetResult]) -> dict[str, dict[str, Any]]:
    """The headline figures, in the layout of the ``--json`` line."""
    out = results["outcome"]
    m = out.metrics
    best_baseline_auc = max(b["auc"] for b in out.baselines.values())
    oracle_auc = out.oracle.get("auc", float("nan"))
    figures: dict[str, dict[str, Any]] = {"outcome": {
        "auc": m["auc"], "oracle_auc": oracle_auc, "auc_ratio_to_oracle": m["auc"] / oracle_auc,
        "ece": m["ece"], "ece_sampling_floor": m["ece_sampling_floor"],
        "log_loss": m["log_loss"], "brier": m["brier"],
        "auc_gain_vs_best_baseline": m["auc"] - best_baseline_auc,
    }}
    for name in ("remaining_time", "payment_delay"):
        res = results[name]
        base = res.baselines["historical"]["mae_days"]
        figures[name] = {
            "mae_days": res.metrics["mae_days"], "baseline_mae_days": base,
            "mae_ratio_to_baseline": res.metrics["mae_days"] / base,
            "coverage_80": res.metrics["coverage_80"],
        }
    return {k: {f: round(float(v), 4) for f, v in d.items()} for k, d in figures.items()}


def checks(results: dict[str, TargetResult]) -> list[tuple[str, str, bool]]:
    """(target, what was measured, met?) for every quality target."""
    out = results["outcome"]
    m = out.metrics
    rows = []
    ratio = m["auc"] / out.oracle["auc"] if out.oracle.get("auc") else float("nan")
    rows.append(("win/loss", f"AUC / oracle AUC = {ratio:.3f} (>= {TARGET_AUC_RATIO})",
                 ratio >= TARGET_AUC_RATIO))
    rows.append(("win/loss", f"ECE = {m['ece']:.4f} (<= {TARGET_ECE})", m["ece"] <= TARGET_ECE))
    for name, b in out.baselines.items():
        rows.append(("win/loss", f"AUC {m['auc']:.4f} > {name} {b['auc']:.4f}",
                     m["auc"] > b["auc"]))
        rows.append(("win/loss", f"log loss {m['log_loss']:.4f} < {name} {b['log_loss']:.4f}",
                     m["log_loss"] < b["log_loss"]))
    lo, hi = TARGET_COVERAGE
    for name in ("remaining_time", "payment_delay"):
        res = results[name]
        mae, base = res.metrics["mae_days"], res.baselines["historical"]["mae_days"]
        rows.append((name, f"MAE {mae:.2f} < baseline {base:.2f} days", mae < base))
        cov = res.metrics["coverage_80"]
        rows.append((name, f"10-90% coverage {cov:.3f} in [{lo}, {hi}]", lo <= cov <= hi))
    return rows


def print_report(results: dict[str, TargetResult], timings: dict[str, float],
                 console: Console) -> None:
    table = Table(title="Win/loss (test prefixes)")
    for column in ("model", "AUC", "log loss", "Brier", "ECE"):
        table.add_column(column, justify="left" if column == "model" else "right")
    out = results["outcome"]
    rows = [(f"shipped: {out.kind}", out.metrics), *out.baselines.items()]
    if out.oracle:
        rows.append(("oracle (simulator truth)", out.oracle))
    for name, m in rows:
        table.add_row(name, *(f"{m[k]:.4f}" for k in ("auc", "log_loss", "brier", "ece")))
    console.print(table)
    console.print(f"uncalibrated ECE {out.metrics['ece_uncalibrated']:.4f}; a perfectly "
                  f"calibrated model's ECE from sampling alone "
                  f"{out.metrics['ece_sampling_floor']:.4f}; calibration "
                  f"used: {getattr(out.bundle.model, 'calibration_used_', '?')}")

    table = Table(title="Regressions (days, test prefixes)")
    for column in ("target", "model MAE", "baseline MAE", "ratio", "coverage 10-90%",
                   "width", "oracle MAE"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for name in ("remaining_time", "payment_delay"):
        res = results[name]
        m, base = res.metrics, res.baselines["historical"]
        oracle = f"{res.oracle['mae_days']:.2f}" if res.oracle else "-"
        table.add_row(name, f"{m['mae_days']:.2f}", f"{base['mae_days']:.2f}",
                      f"{m['mae_days'] / base['mae_days']:.3f}", f"{m['coverage_80']:.3f}",
                      f"{m['interval_width_days']:.1f}", oracle)
    console.print(table)

    table = Table(title="Quality targets")
    for column in ("target", "check", "met"):
        table.add_column(column)
    for target, what, met in checks(results):
        table.add_row(target, what, "[green]yes[/]" if met else "[red]no[/]")
    console.print(table)
    console.print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


def early_ratios(test: Any) -> dict[str, float]:
    """On prefixes of length 1-2: our AUC over the oracle's, over the at-creation
    oracle's (``p_win_at_creation``: all that exists before the first event, known
    exactly), and the at-creation oracle's over the oracle's, the ceiling of the first
    ratio for a model that cannot see a deal's own health before its events show it."""
    nan = float("nan")
    out = {"auc_ratio_to_oracle_k1_2": nan, "auc_ratio_to_creation_oracle_k1_2": nan,
           "creation_oracle_ratio_k1_2": nan}
    early = test["prefix_len"].to_numpy() <= 2
    if "p_oracle" not in test or early.sum() < 20 or test.loc[early, "y"].nunique() < 2:
        return out
    y = test.loc[early, "y"]
    ours = roc_auc_score(y, test.loc[early, "p_win"])
    oracle = roc_auc_score(y, test.loc[early, "p_oracle"])
    out["auc_ratio_to_oracle_k1_2"] = float(ours / oracle)
    if "p_creation" in test:
        creation = roc_auc_score(y, test.loc[early, "p_creation"])
        out["auc_ratio_to_creation_oracle_k1_2"] = float(ours / creation)
        out["creation_oracle_ratio_k1_2"] = float(creation / oracle)
    return out


def sweep_figures(results: dict[str, TargetResult]) -> dict[str, dict[str, float]]:
    """One seed's figures of the size sweep: AUC ratio to the oracle overall and on
    prefixes of length 1-2 (``early_ratios``), ECE beside the oracle's own ECE on the same
    test prefixes (how far from 0 sampling alone puts a perfectly calibrated model), the
    kind shipped; MAE ratio and coverage per regression."""
    out = results["outcome"]
    figures: dict[str, dict[str, Any]] = {"outcome": {
        "auc_ratio_to_oracle": out.metrics["auc"] / out.oracle.get("auc", float("nan")),
        **early_ratios(out.test), "ece": out.metrics["ece"],
        "oracle_ece": out.oracle.get("ece", float("nan")),
        "ece_sampling_floor": out.metrics["ece_sampling_floor"], "kind": out.kind}}
    for name in ("remaining_time", "payment_delay"):
        res = results[name]
        figures[name] = {
            "mae_ratio_to_baseline": res.metrics["mae_days"]
            / res.baselines["historical"]["mae_days"],
            "coverage_80": res.metrics["coverage_80"], "kind": res.kind}
    return {t: {k: v if isinstance(v, str) else round(float(v), 4) for k, v in f.items()}
            for t, f in figures.items()}


def worst_of(seeds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per figure, the worst seed's value (lowest ratio, highest ECE, farthest coverage)."""
    out: dict[str, dict[str, Any]] = {}
    for target in seeds[0]:
        out[target] = {}
        for key in seeds[0][target]:
            values = [s[target][key] for s in seeds]
            if key == "kind":
                out[target][key] = sorted(set(values))
            elif key in ("ece", "oracle_ece", "ece_sampling_floor", "mae_ratio_to_baseline"):
                out[target][key] = max(values)
            elif key == "coverage_80":
                out[target][key] = max(values, key=lambda v: abs(v - 0.8))
            else:
                out[target][key] = min(values)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=DEFAULT_CASES, help="cases to simulate")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="simulation seed")
    parser.add_argument("--sizes", type=str, default="",
                        help="also sweep these log sizes, e.g. 5000,20000,100000")
    parser.add_argument("--seeds", type=str, default="1,2,3",
                        help="simulation seeds of the sweep (worst seed reported per size)")
    parser.add_argument("--no-default", action="store_true",
                        help="with --sizes: skip the default-size run")
    parser.add_argument("--json", action="store_true",
                        help="print the headline figures as one JSON object on the last line")
    args = parser.parse_args(argv)
    if args.cases < 1:
        parser.error("--cases must be at least 1")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    figures: dict[str, Any] = {}
    if not (sizes and args.no_default):
        err.print(f"simulating {args.cases:,} cases (seed {args.seed}) and fitting three "
                  "targets")
        results, timings = run(args.cases, args.seed)
        print_report(results, timings, Console(stderr=args.json, width=110))
        figures = summary(results)
        figures["outcome"]["kind"] = results["outcome"].kind  # type: ignore[assignment]
    by_size: dict[str, Any] = {}
    for size in sizes:
        per_seed = []
        for seed in seeds:
            err.print(f"sweep: {size:,} cases, seed {seed}")
            results, _ = run(size, seed)
            per_seed.append(sweep_figures(results))
            err.print(f"  {per_seed[-1]}")
        by_size[str(size)] = worst_of(per_seed) | {"seeds": seeds}
        _print_sweep(size, by_size[str(size)], Console(stderr=args.json, width=110))
    if by_size:
        figures["by_size"] = by_size
    if args.json:
        print(json.dumps(figures))
    return 0


def _print_sweep(size: int, worst: dict[str, Any], console: Console) -> None:
    o = worst["outcome"]
    console.print(
        f"[bold]{size:,} cases[/] (worst of seeds {worst['seeds']}): AUC/oracle "
        f"{o['auc_ratio_to_oracle']:.3f}, at prefix lengths 1-2 "
        f"{o['auc_ratio_to_oracle_k1_2']:.3f} (to the at-creation oracle "
        f"{o['auc_ratio_to_creation_oracle_k1_2']:.3f}; its own ratio "
        f"{o['creation_oracle_ratio_k1_2']:.3f}), ECE {o['ece']:.4f} (oracle's "
        f"{o['oracle_ece']:.4f}, a calibrated model's from sampling alone "
        f"{o['ece_sampling_floor']:.4f}), shipped {o['kind']}; "
        + "; ".join(f"{n}: MAE/baseline {worst[n]['mae_ratio_to_baseline']:.3f}, "
                    f"coverage {worst[n]['coverage_80']:.3f}, shipped {worst[n]['kind']}"
                    for n in ("remaining_time", "payment_delay")))


if __name__ == "__main__":
    raise SystemExit(main())
