"""Which kind of model to ship: the most elaborate one that is not worse than a simpler one.

A boosted model that does not beat the simple answer on new data is a worse product than
the simple answer: it costs explaining, hides that the data holds little signal, and its
probabilities may be less honest. Candidates are ordered from the most elaborate
(LightGBM) to the simplest (the base rate, a median); each is scored on the latest
training block, which none of the candidates was fitted on (never the test set, which
stays the judge of what was shipped). The first candidate, going down, that is at least
as good as every simpler one on every metric that counts (the target's main metric, and
log loss for a probability) is shipped; the simplest always qualifies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.metrics import classification_metrics, regression_metrics

#: how each kind is named to people (run tags, ``l2c runs``, the API, explanations)
KIND_LABELS = {
    "lightgbm": "LightGBM",
    "logistic": "logistic regression",
    "stage_rate": "win rate of the stage",
    "base_rate": "overall win rate",
    "median_by_last_activity": "median by last activity",
    "account_terms_mean": "account's past mean, else the terms' mean",
}
#: kinds that are the simple answer users have today, not a model learnt from features
BASELINE_KINDS = frozenset({"stage_rate", "base_rate", "median_by_last_activity",
                            "account_terms_mean"})


@dataclass
class Choice:
    kind: str
    reason: str
    #: per candidate, its metrics on the latest training block
    scores: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def is_baseline(self) -> bool:
        return self.kind in BASELINE_KINDS


def kind_label(kind: str) -> str:
    """The kind as people read it (``KIND_LABELS``), or its code if it has no label."""
    return KIND_LABELS.get(kind, kind)


def choose(y: np.ndarray, candidates: dict[str, np.ndarray], classification: bool) -> Choice:
    """``candidates``: kind -> predictions on the latest training block, most elaborate
    first. Probabilities are judged on AUC and log loss, regressions on MAE."""
    y = np.asarray(y, dtype=float)
    if classification:
        scores = {k: classification_metrics(y, p) for k, p in candidates.items()}
        metrics = (("auc", True), ("log_loss", False))
    else:
        scores = {k: regression_metrics(y, p) for k, p in candidates.items()}
        metrics = (("mae_days", False),)
    kinds = list(candidates)

    simplest = kinds[-1]

    def worse(a: str, b: str) -> list[str]:
        """The metrics on which ``a`` is worse than ``b`` (a NaN AUC counts as 0.5).

        Log loss is held against the simplest answer (the base rate) only: the latest
        block is the newest, most drifted one, where every learnt model's probabilities
        are a little off and the shipped one, refitted on it, is not; a model that ranks
        better and beats always saying the base rate is worth shipping, one that does
        not beat the base rate is not."""
        out = []
        for metric, higher in metrics:
            if metric == "log_loss" and b != simplest:
                continue
            va, vb = (np.nan_to_num(scores[k][metric], nan=0.5) for k in (a, b))
            if (va < vb) if higher else (va > vb):
                out.append(metric)
        return out

    def figures(kind: str) -> str:
        return ", ".join(f"{m} {scores[kind][m]:.4f}" for m, _ in metrics)

    def first_better_simpler(kind: str) -> str | None:
        """Why ``kind`` loses: the first simpler candidate better on some metric."""
        for simpler in kinds[kinds.index(kind) + 1:]:
            metrics_lost = worse(kind, simpler)
            if metrics_lost:
                return (f"{kind_label(kind)} ({figures(kind)}) was worse on "
                        f"{' and '.join(metrics_lost)} than {kind_label(simpler)} "
                        f"({figures(simpler)})")
        return None

    rejected = []
    for kind in kinds:
        why = first_better_simpler(kind)
        if why is not None:
            rejected.append(why)
            continue
        simpler = [kind_label(k) for k in kinds[kinds.index(kind) + 1:]]
        reason = f"{kind_label(kind)}: {figures(kind)} on the latest training block ({len(y)} rows)"
        reason += (f", at least as good as {', '.join(simpler)}" if simpler
                   else ", the simplest answer")
        if rejected:
            reason += "; not shipped: " + "; ".join(rejected)
        return Choice(kind=kind, reason=reason, scores=scores)
    raise AssertionError("the simplest candidate always qualifies")  # pragma: no cover
