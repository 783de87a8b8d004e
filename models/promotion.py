"""Promotion: the champion alias moves only to a model that is at least as good.

The gate lives here, under ``models/``, so that both ``l2c promote`` (through
``training.promote``, which re-exports it) and the cockpit's models page (serving may
use models/, never training/) apply the very same rule.

Both the candidate and the current champion are scored on the candidate's own test
cases (the newer data), each through its own bundled feature pipeline, on the
prefixes both can score. A worse candidate is refused unless forced.

Before any of that, the candidate must be promotable (its training run finished) and
must load and pass the same smoke test serving applies (``models.registry.load_version``):
``--force`` overrides a worse score, never a model that cannot serve.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.bundle import TargetBundle
from models.metrics import classification_metrics, regression_metrics
from models.registry import (
    CHAMPION,
    ModelUnusableError,
    configure_mlflow,
    current_champion,
    load_version,
    tag_promoted,
    unpromotable_reason,
    versions_newest_first,
)
from models.targets import TARGETS, Target


class PromotionSettings(BaseSettings):
    """Bounds promotion holds a candidate to, besides beating the champion (environment
    variables ``L2C_PROMOTE_MAX_ECE`` and so on; ``l2c promote --force`` overrides)."""

    model_config = SettingsConfigDict(env_prefix="L2C_PROMOTE_", extra="ignore")

    max_ece: float = Field(0.05, ge=0, le=1, description="largest expected calibration "
                           "error of a win model on its test data")
    auc_tolerance: float = Field(0.005, ge=0, le=1, description="how far a win model's test "
                                 "AUC may fall below its stage-rate baseline's")
    mae_tolerance: float = Field(0.01, ge=0, le=1, description="how far (relative) a "
                                 "regression's test MAE may rise above its baseline's")


class PromotionError(Exception):
    """The candidate cannot be promoted; the message says why."""


class PromotionRefused(PromotionError):
    """The candidate is worse than the champion on the candidate's test data."""


class NotPromotable(PromotionError):
    """The version's training run did not finish (interrupted, failed or deleted)."""


class CandidateUnusable(PromotionError):
    """The candidate cannot be loaded, or loads but cannot predict or explain."""


class ComparisonFailed(PromotionError):
    """The candidate could not be compared with the champion (unless forced)."""


class DishonestModel(PromotionRefused):
    """The candidate is worse than its own baseline on its test data, or its probabilities
    are off by more than the settings allow (unless forced)."""


@dataclass
class PromotionResult:
    target: str
    version: int
    previous: int | None
    candidate_score: float | None
    champion_score: float | None
    metric: str
    forced: bool
    #: what the user should know though promotion went ahead (low data, a forced gate)
    warnings: list[str] = field(default_factory=list)
    registered_name: str = ""


#: log losses closer than this are the same predictions summed in another order (a win
#: model that ships the base rate, or a stage rate on a log with one stage, differs from
#: "always the base rate" by ~1e-9): not worse
_SAME_LOSS = 1e-6


def honesty_problems(bundle: TargetBundle, settings: PromotionSettings | None = None
                     ) -> list[str]:
    """Why the model is not an honest improvement on the simple answer, from its own test
    figures (``bundle.info``: the shipped model's metrics and its baselines' on the same
    test prefixes); empty when it is, or when the bundle predates these figures."""
    settings = settings or PromotionSettings()
    info = getattr(bundle, "info", {})
    metrics, baselines = info.get("metrics", {}), info.get("test_baselines", {})
    problems = []
    if bundle.target.kind == "classification":
        stage = baselines.get("stage_rate", {}).get("auc")
        auc = metrics.get("auc")
        if stage is not None and auc is not None and auc < stage - settings.auc_tolerance:
            problems.append(f"test AUC {auc:.4f} is below its stage-rate baseline's "
                            f"{stage:.4f} (tolerance {settings.auc_tolerance})")
        prior = baselines.get("base_rate", {}).get("log_loss")
        loss = metrics.get("log_loss")
        if prior is not None and loss is not None and loss > prior + _SAME_LOSS:
            shown, bound = _apart(loss, prior)
            problems.append(f"test log loss {shown} is worse than always predicting the "
                            f"base rate ({bound})")
        ece = metrics.get("ece")
        if ece is not None and ece > settings.max_ece:
            problems.append(f"test calibration error (ECE) {ece:.4f} is above the bound "
                            f"{settings.max_ece} (L2C_PROMOTE_MAX_ECE)")
    else:
        base = baselines.get("historical", {}).get("mae_days")
        mae = metrics.get("mae_days")
        if base is not None and mae is not None and mae > base * (1 + settings.mae_tolerance):
            problems.append(f"test MAE {mae:.2f} days is worse than its baseline's "
                            f"{base:.2f} days (tolerance {settings.mae_tolerance:.0%})")
    return problems


def model_name_for(client: MlflowClient, target: Target, run_or_version: str,
                   process: str | None) -> str:
    """The registered name: the given process's, else the named run's process (tag
    ``l2c.process``), else the default process's (``models.targets``)."""
    if process is not None:
        return target.model_name(process)
    if (not run_or_version.isdigit() and run_or_version != "latest"
            and re.fullmatch(r"[A-Za-z0-9_-]+", run_or_version)):
        try:
            tagged = client.get_run(run_or_version).data.tags.get("l2c.process")
        except MlflowException:
            tagged = None
        return target.model_name(tagged)
    return target.registered_name


def resolve_version(client: MlflowClient, target: Target, run_or_version: str,
                    name: str | None = None) -> int:
    """A version number as given, 'latest' (the newest promotable version), or the
    version registered from a run id. A version whose run did not finish is refused.
    ``name``: the registered model (default: the target's default-process name)."""
    name = name or target.registered_name
    if run_or_version == "latest":
        found = versions_newest_first(client, name)
        if not found:
            raise PromotionError(f"{name} has no version yet: train first")
        skipped = []
        for version in found:
            why = unpromotable_reason(client, version)
            if why is None:
                return int(version.version)
            skipped.append(why)
        raise NotPromotable(f"{name} has no promotable version: " + "; ".join(skipped[:5]))
    if run_or_version.isdigit():
        try:
            version = client.get_model_version(name, run_or_version)
        except MlflowException as exc:
            raise PromotionError(f"{name} has no version {run_or_version}") from exc
    else:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", run_or_version):  # it goes into a filter
            raise PromotionError(
                f"{run_or_version!r} is not a version number, 'latest' or a run id")
        found = client.search_model_versions(
            f"name = '{name}' and run_id = '{run_or_version}'")
        if not found:
            raise PromotionError(
                f"run {run_or_version!r} registered no {target.name} model "
                f"({name}); pass a run id from `l2c runs` or a version number")
        version = max(found, key=lambda v: int(v.version))
    why = unpromotable_reason(client, version)
    if why is not None:
        raise NotPromotable(f"{why}; it cannot be promoted: train again")
    return int(version.version)


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


def _apart(a: float, b: float) -> tuple[str, str]:
    """Two figures with as many decimals (4 to 8) as it takes to tell them apart: "0.6937
    is worse than 0.6937" reads as a contradiction."""
    for digits in range(4, 9):
        shown = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if shown[0] != shown[1]:
            break
    return shown


def promote(target_name: str, run_or_version: str | int, force: bool = False,
            process: str | None = None,
            settings: PromotionSettings | None = None) -> PromotionResult:
    if target_name not in TARGETS:
        raise PromotionError(f"unknown target {target_name!r}; one of {list(TARGETS)}")
    target = TARGETS[target_name]
    configure_mlflow()
    client = MlflowClient()
    name = model_name_for(client, target, str(run_or_version), process)
    version = resolve_version(client, target, str(run_or_version), name)
    try:
        candidate_bundle = load_version(name, version)
    except ModelUnusableError as exc:
        raise CandidateUnusable(f"{exc}; the champion alias was not moved") from exc
    warnings = []
    problems = honesty_problems(candidate_bundle, settings)
    if problems and not force:
        raise DishonestModel(f"{name} version {version}: {'; '.join(problems)}; use --force "
                             "to promote anyway")
    warnings += [f"promoted though {p}" for p in problems]
    low_data = candidate_bundle.info.get("low_data")
    if low_data:
        warnings.append(str(low_data))
    previous = current_champion(client, name)
    candidate_score = champion_score = None
    if previous is not None and previous != version:
        try:
            candidate_score, champion_score, compared = _compare(
                client, target, version, previous, candidate_bundle)
        except ComparisonFailed:
            if not force:
                raise
        else:
            worse = (candidate_score < champion_score if target.higher_is_better
                     else candidate_score > champion_score)
            if worse and not force:
                raise PromotionRefused(
                    f"{name} version {version} is worse than champion version {previous} on "
                    f"version {version}'s test data: {target.main_metric} "
                    f"{' vs '.join(_apart(candidate_score, champion_score))} ({compared} "
                    "prefixes); "
                    "use --force to promote anyway")
    client.set_registered_model_alias(name, CHAMPION, str(version))
    tag_promoted(client, name, version)
    return PromotionResult(target=target_name, version=version, previous=previous,
                           candidate_score=candidate_score, champion_score=champion_score,
                           metric=target.main_metric, forced=force, warnings=warnings,
                           registered_name=name)


def _compare(client: MlflowClient, target: Target, version: int, previous: int,
             candidate: TargetBundle) -> tuple[float, float, int]:
    """Candidate and champion scores on the candidate's test prefixes both can score."""
    name = candidate.info.get("registered_name", target.registered_name)
    run_id = client.get_model_version(name, str(version)).run_id
    try:
        events, test_cases = _evaluation_set(client, run_id)
    except Exception as exc:  # missing or damaged artifacts of the candidate's run
        raise ComparisonFailed(
            f"the test data of {name} version {version} (run {run_id}) cannot be read "
            f"({type(exc).__name__}: {exc}); use --force to promote without comparing"
        ) from exc
    try:
        champion = load_version(name, previous)
    except ModelUnusableError as exc:
        raise ComparisonFailed(
            f"the current champion cannot be compared with: {exc}; use --force to replace it "
            f"with version {version}") from exc
    try:
        scored = score_on(candidate, events, test_cases)
        both = scored.merge(score_on(champion, events, test_cases),
                            on=["case_id", "prefix_len"], suffixes=("", "_champ"))
    except Exception as exc:  # e.g. a champion built for another mapping or feature set
        raise ComparisonFailed(
            f"{name} version {version} and champion version {previous} cannot both score "
            f"version {version}'s test data ({type(exc).__name__}: {exc}); use --force to "
            "promote without comparing") from exc
    if len(both) < 20:
        raise ComparisonFailed(
            f"{name} version {version} and champion version {previous} share "
            f"{len(both)} test prefixes (fewer than 20); use --force to promote anyway")
    candidate_score = main_metric(target, both[["y", "score"]])
    champion_score = main_metric(target, both[["y", "score_champ"]].rename(
        columns={"score_champ": "score"}))
    return candidate_score, champion_score, len(both)
