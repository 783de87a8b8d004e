"""``l2c promote``'s gate: kept in ``models.promotion`` (the cockpit's models page applies
the same one, and serving may not import training); re-exported here under its old
names."""

from models.promotion import (
    CandidateUnusable,
    ComparisonFailed,
    DishonestModel,
    NotPromotable,
    PromotionError,
    PromotionRefused,
    PromotionResult,
    PromotionSettings,
    honesty_problems,
    main_metric,
    model_name_for,
    promote,
    resolve_version,
    score_on,
)

__all__ = ["CandidateUnusable", "ComparisonFailed", "DishonestModel", "NotPromotable",
           "PromotionError", "PromotionRefused", "PromotionResult", "PromotionSettings",
           "honesty_problems", "main_metric", "model_name_for", "promote", "resolve_version",
           "score_on"]
