"""Train the chosen targets on one log and record the run: the data scientist's job."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from features.mapping import Mapping
from models.registry import configure_mlflow
from models.targets import resolve_targets
from training.config import TrainConfig
from training.data import TrainingData, prepare_training_data
from training.fit import TargetResult, fit_target
from training.tracking import log_training_run

Progress = Callable[[str], None]


@dataclass
class TrainingOutcome:
    run_id: str
    versions: dict[str, int]
    results: list[TargetResult]
    data: TrainingData
    tracking_uri: str
    #: targets the log could not train (``--target all``) -> why
    skipped: dict[str, str] = field(default_factory=dict)
    process: str | None = None


def train(log: str | Path, mapping: str | Path | Mapping | None = None, target: str = "all",
          config: TrainConfig | None = None, progress: Progress | None = None) -> TrainingOutcome:
    """Read and check the log, fit every target, then log one MLflow run.

    Reading, validation and fitting all finish before the run opens, so a bad log or
    a failing fit never leaves a half-written run or model behind.
    """
    config = config or TrainConfig()
    step = progress or (lambda _message: None)
    targets = resolve_targets(target)
    step("reading and validating the log")
    data = prepare_training_data(log, mapping, config, targets,
                                 skip_untrainable=target == "all")
    if config.process is None:  # models are named after the process (models.targets)
        config = config.model_copy(update={"process": data.log.mapping.name})
    results = []
    for t in targets:
        if t.name in data.skipped:
            step(f"skipping {t.name}: {data.skipped[t.name]}")
            continue
        step(f"training {t.name}")
        results.append(fit_target(data, t, config))
    step("logging to MLflow")
    uri = configure_mlflow()
    mapping_file = mapping if isinstance(mapping, str | Path) else None
    run_id, versions = log_training_run(data, results, config, mapping_file)
    return TrainingOutcome(run_id=run_id, versions=versions, results=results, data=data,
                           tracking_uri=uri, skipped=dict(data.skipped),
                           process=config.process)
