"""One training configuration shared by the CLI, the benchmarks and the tests."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.promotion import PromotionSettings  # noqa: F401  (its home is models/)

#: LightGBM's names for the per-column gain factor (``feature_penalty`` and its aliases)
FEATURE_PENALTY_NAMES = frozenset({"feature_penalty", "feature_contri", "feature_contrib",
                                   "fc", "fp"})


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
    summary_penalty: float = Field(
        0.1, gt=0, le=1, description="LightGBM's split gain on the features the encoders "
        "call summaries (transition counts, days since each activity, counts of each "
        "value, position in the quarter) is multiplied by this; 1 reads them like the "
        "others")
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

    def lgbm_params(self, feature_names: Sequence[str],
                    summaries: Collection[str]) -> dict[str, Any]:
        """The LightGBM overrides for a matrix of ``feature_names``: ``lgbm`` and, unless
        it names its own, the penalty on the summaries (a gain factor per column, in
        the matrix's order)."""
        if (self.summary_penalty == 1 or not summaries
                or FEATURE_PENALTY_NAMES & set(self.lgbm)):
            return dict(self.lgbm)
        penalised = set(summaries)
        return {**self.lgbm, "feature_penalty": [
            self.summary_penalty if name in penalised else 1.0 for name in feature_names]}

    def flat_params(self) -> dict[str, Any]:
        params = self.model_dump(exclude={"lgbm"})
        params.update({f"lgbm.{k}": v for k, v in self.lgbm.items()})
        return params
