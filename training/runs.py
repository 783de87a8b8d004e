"""Runs side by side: which data, which settings, which results."""

from __future__ import annotations

import mlflow
import pandas as pd

from models.registry import configure_mlflow
from models.targets import TARGETS

SHOWN_PARAMS = ("process", "data.path", "data.cases", "data.events", "data.sha256",
                "data.last_event",
                "split.time", "max_prefix_len", "calibration", "seed")


def compare_runs(experiment: str = "lead-to-cash", max_runs: int = 10) -> pd.DataFrame:
    """One column per run (newest first); rows: data, params, main metrics vs baselines."""
    configure_mlflow()
    runs = mlflow.search_runs(experiment_names=[experiment], max_results=max_runs,
                              order_by=["attributes.start_time DESC"])
    if runs.empty:
        return pd.DataFrame()
    rows: dict[str, list[object]] = {"started": list(runs["start_time"].dt.strftime(
        "%Y-%m-%d %H:%M"))}
    for param in SHOWN_PARAMS:
        column = f"params.{param}"
        values = runs[column] if column in runs else pd.Series([None] * len(runs))
        if param == "data.sha256":
            values = values.str[:12]
        rows[param] = list(values)
    for target in TARGETS.values():
        for tag in ("kind", "low_data"):  # what was shipped (models.selection), thin data
            column = f"tags.{target.name}.{tag}"
            if column in runs:
                rows[f"{target.name}.{tag}"] = [
                    None if not isinstance(v, str) else v if len(v) < 40 else "yes"
                    for v in runs[column]]
        for metric in _metrics_of(target.name, runs):
            rows[metric] = list(runs[f"metrics.{metric}"].round(4))
    table = pd.DataFrame(rows, index=runs["run_id"]).T
    table.columns = [c[:12] for c in table.columns]
    return table


#: the order of a metric's rows: the shipped model's test figure, its baselines' on the
#: same test data, the oracle's (simulated logs), then each candidate's on the latest
#: training block (how the kind was chosen)
_SOURCES = ("", "baseline_", "oracle", "selection_")


def _metrics_of(target: str, runs: pd.DataFrame) -> list[str]:
    wanted = {"outcome": ["auc", "log_loss", "ece"], "remaining_time": ["mae_days", "coverage_80"],
              "payment_delay": ["mae_days", "coverage_80"]}[target]
    names = []
    for metric in wanted:
        found = [c.removeprefix("metrics.") for c in runs.columns
                 if c.startswith(f"metrics.{target}.") and c.endswith(f".{metric}")
                 and ".prefix_" not in c and ".learning_curve." not in c]
        names += sorted(found, key=lambda name: (_source(target, metric, name), name))
    if target == "outcome":  # how much a deal's score swings between its events (issue 19)
        names += [f"outcome.stability.{m}" for m in ("median_jump", "p90_jump")
                  if f"metrics.outcome.stability.{m}" in runs.columns]
    return sorted(set(names), key=names.index)


def _source(target: str, metric: str, name: str) -> int:
    middle = name.removeprefix(f"{target}.").removesuffix(f".{metric}").removesuffix(metric)
    return next((i for i, s in reversed(list(enumerate(_SOURCES))) if middle.startswith(s)),
                len(_SOURCES))
