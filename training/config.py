"""One training configuration shared by the CLI, the benchmarks and the tests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.promotion import PromotionSettings  # noqa: F401  (its home is models/)


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
    select_kind: bool = Field(
        True, description="ship the best of LightGBM, the logistic base and the baselines on "
        "the latest training block (models.selection); False: always LightGBM")
    process: str | None = Field(
        None, description="the process the models are named after (l2c-<process>-outcome); "
        "default: the mapping's name (the simulator's keeps l2c-outcome)")
    learning_curve: bool = Field(
        True, description="log the test metric when training on 10, 25, 50 and 100% of "
        "the training cases")
    experiment: str = "lead-to-cash"

    def flat_params(self) -> dict[str, Any]:
        params = self.model_dump(exclude={"lgbm"})
        params.update({f"lgbm.{k}": v for k, v in self.lgbm.items()})
        return params
