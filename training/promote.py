"""Promotion: the champion alias moves only to a model that is at least as good.

Both the candidate and the current champion are scored on the candidate's own test
cases (the newer data), each through its own bundled feature pipeline, on the
prefixes both can score. A worse candidate is refused unless forced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from models.bundle import TargetBundle
from models.metrics import classification_metrics, regression_metrics
from models.pyfunc import load_bundle
from models.registry import CHAMPION, configure_mlflow, current_champion
from models.targets import TARGETS, Target


class PromotionError(Exception):
    """The candidate cannot be promoted; the message says why."""


class PromotionRefused(PromotionError):
    """The candidate is worse than the champion on the candidate's test data."""


@dataclass
class PromotionResult:
    target: str
    version: int
    previous: int | None
    candidate_score: float | None
    champion_score: float | None
    metric: str
    forced: bool


def resolve_version(client: MlflowClient, target: Target, run_or_version: str) -> int:
    """A version number as given, 'latest', or the version registered from a run id."""
    if run_or_version == "latest":
        found = client.search_model_versions(f"name = '{target.registered_name}'")
        if not found:
            raise PromotionError(f"{target.registered_name} has no version yet: train first")
        return max(int(v.version) for v in found)
    if run_or_version.isdigit():
        try:
            client.get_model_version(target.registered_name, run_or_version)
        except MlflowException as exc:
            raise PromotionError(
                f"{target.registered_name} has no version {run_or_version}") from exc
        return int(run_or_version)
    found = client.search_model_versions(
        f"name = '{target.registered_name}' and run_id = '{run_or_version}'")
    if not found:
        raise PromotionError(
            f"run {run_or_version!r} registered no {target.name} model "
            f"({target.registered_name}); pass a run id from `l2c runs` or a version number")
    return int(found[0].version)


def _evaluation_set(client: MlflowClient, run_id: str) -> tuple[pd.DataFrame, list[str]]:
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation"))
    events = pd.read_parquet(local / "events.parquet")
    split = json.loads((local / "split.json").read_text())
    return events, split["test_cases"]


def score_on(bundle: TargetBundle, events: pd.DataFrame, test_cases: list[str]) -> pd.DataFrame:
    """Predictions and labels of one bundle on the test cases' prefixes."""
    frame = bundle.pipeline.transform(events)
    labels = bundle.pipeline.labels(events)
    keep = frame["case_id"].isin(test_cases).to_numpy() & bundle.target.rows(labels)
    predictions = bundle.predict_features(frame[keep])
    column = "p_win" if bundle.target.kind == "classification" else "prediction_days"
    return pd.DataFrame({"case_id": predictions["case_id"],
                         "prefix_len": predictions["prefix_len"],
                         "y": labels.loc[keep, bundle.target.label].to_numpy(),
                         "score": predictions[column].to_numpy()})


def main_metric(target: Target, scored: pd.DataFrame) -> float:
    y, s = scored["y"].to_numpy(dtype=float), scored["score"].to_numpy(dtype=float)
    if target.kind == "classification":
        return classification_metrics(y, s)[target.main_metric]
    return regression_metrics(y, s)[target.main_metric]


def promote(target_name: str, run_or_version: str | int, force: bool = False) -> PromotionResult:
    if target_name not in TARGETS:
        raise PromotionError(f"unknown target {target_name!r}; one of {list(TARGETS)}")
    target = TARGETS[target_name]
    configure_mlflow()
    client = MlflowClient()
    version = resolve_version(client, target, str(run_or_version))
    previous = current_champion(client, target.registered_name)
    candidate_score = champion_score = None
    if previous is not None and previous != version:
        run_id = client.get_model_version(target.registered_name, str(version)).run_id
        events, test_cases = _evaluation_set(client, run_id)
        name = target.registered_name
        candidate = score_on(load_bundle(f"models:/{name}/{version}"), events, test_cases)
        champion = score_on(load_bundle(f"models:/{name}/{previous}"), events, test_cases)
        both = candidate.merge(champion, on=["case_id", "prefix_len"], suffixes=("", "_champ"))
        if len(both) < 20:
            raise PromotionError("candidate and champion share fewer than 20 test prefixes")
        candidate_score = main_metric(target, both[["y", "score"]])
        champion_score = main_metric(target, both[["y", "score_champ"]].rename(
            columns={"score_champ": "score"}))
        worse = (candidate_score < champion_score if target.higher_is_better
                 else candidate_score > champion_score)
        if worse and not force:
            raise PromotionRefused(
                f"{name} version {version} is worse than champion version {previous} on "
                f"version {version}'s test data: {target.main_metric} "
                f"{candidate_score:.4f} vs {champion_score:.4f} ({len(both)} prefixes); "
                "use --force to promote anyway")
    client.set_registered_model_alias(target.registered_name, CHAMPION, str(version))
    return PromotionResult(target=target_name, version=version, previous=previous,
                           candidate_score=candidate_score, champion_score=champion_score,
                           metric=target.main_metric, forced=force)

