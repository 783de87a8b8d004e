"""One training configuration shared by the CLI, the benchmarks and the tests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """Everything that decides a training run; logged to MLflow as parameters."""

    model_config = ConfigDict(extra="forbid")

    test_fraction: float = Field(0.2, gt=0, lt=1, description="latest cases held out for test")
    fold_fractions: tuple[float, float, float] = Field(
        (0.7, 0.15, 0.15), description="training cases: fit / early stopping / calibration")
    horizon_days: float | None = Field(
        None, description="leave out cases started this close to the extraction; "
        "default: the 95th percentile cycle time of completed cases")
    max_prefix_len: int | None = 40
    thin_after: int | None = None
    thin_step: int = 1
    min_frequency: int = 5
    calibration: str = Field("isotonic", pattern="^(isotonic|sigmoid|none)$")
    win_base: str | None = Field(
        "logistic", description="what the win model boosts from: 'logistic' or None (prior)")
    interval_alpha: float = Field(0.2, gt=0, lt=1, description="0.2 -> a 10-90% interval")
    seed: int = 0
    lgbm: dict[str, Any] = Field(default_factory=dict, description="LightGBM overrides")
    shap_sample: int = 1000
    experiment: str = "lead-to-cash"

    def flat_params(self) -> dict[str, Any]:
        params = self.model_dump(exclude={"lgbm"})
        params.update({f"lgbm.{k}": v for k, v in self.lgbm.items()})
        return params
