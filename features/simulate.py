"""A deterministic, vectorised simulator of a Lead-to-Cash event log with a known truth.

Real CRM exports never tell us the true win probability of a deal, so a model's quality
can only be compared with other models. This simulator writes an export-like log *and*
the quantities a perfect model would predict, so a model can be compared with the
Bayes oracle: a model that beats it is leaking, one far below it is underfitting.

Generative design (the truth frame is exact for it):

* Every case has a latent win logit ``L = base + lead source + product
  - b*log(amount in USD) + rep skill + workload + w*u_health + noise`` (``w = 0.7``).
  ``u_health ~ N(0, 1)`` is never written, but it drives what the log shows, so a good
  model can learn much of it: a slower first response to the lead, fewer meetings,
  a slower pace, more stalls, more re-quotes, higher discounts and more stage
  regressions when it is low. Part of it is the account's relationship with the
  vendor (correlation 0.7 between a deal's health and its account's), which the
  account's earlier deals reveal.
* Losses are stage gates: leaving sales stage ``j`` the case passes with
  ``q_j = sigmoid(L + c_j)``, else it gets "Opportunity Lost". Events inside a stage
  are drawn from ``L``'s parts only, never from the gate draw, so
  ``prod_{k >= j} q_k`` is the exact win probability of any prefix whose furthest sales
  stage is ``j`` (``p_win_from_<stage>``). A "Stage Regressed" event moves the ``stage``
  column back to Proposal, but the gate already passed, so use the furthest stage.
* Cross-case effects only other cases reveal: rep skill and speed (a rep's history),
  the rep's workload (cases started in the previous 60 days; overload lowers ``L`` and
  slows the rep), the account's relationship (its earlier wins) and its payment habit
  (its earlier payment delays).
* Payment delay = account habit + terms + region + 2 days per log-unit of deal size
  (more sign-offs at the customer) - 2 days per unit of health (hard-won deals are paid
  reluctantly) + 8 days if the invoice was corrected + ``N(0, 4)`` noise, counted from
  the due date (first invoice + terms).
* Calendar: business hours 08-18 UTC on weekdays (later events never move earlier),
  quarter-end pushes (faster, more discount within 21 days of a calendar quarter's end),
  a process change at 60 % of the window (discount-approval threshold 15 % -> 10 %,
  approvals by a faster deal desk), case starts growing over time, and an extraction
  date (``start + round(365.25 * years)`` days) after which events are dropped, leaving
  open cases that keep their prefix.

``p_win_at_creation`` is the win probability given all that exists before the deal's
first event, known exactly: lead source, product, amount, the rep's skill and workload,
the account's relationship; only the deal's own share of its health and the noise are
integrated out. No model can know those parts exactly (a rep's skill and an account's
relationship are only revealed by their earlier deals), so at a case's first events it is
a ceiling above any honest model and below ``p_win``, which also knows the deal's own
health (later events reveal it).

Truth notes: ``won``, ``cycle_days`` and ``payment_delay_days`` are the realised values
of the full simulation, also for cases the extraction cut (``open_at_extraction``).
``expected_cycle_days`` is the expectation at creation over the gates, repeats, stalls
and approvals (lognormal means, the stage-reach probabilities, a mean business-hour shift
per event, the average quarter-end speed-up); it ignores the 90-day gap cap and the
"one day after the last invoice" payment floor, and is unbiased to within a few percent.
``expected_payment_delay_days`` is the delay without its ``N(0, 4)`` noise, given
whether the invoice was corrected.

Injectable process effects (``ProcessEffects``), each of a known size, so that process
insight can be checked for finding what is there: an approval bottleneck (extra days
between "Discount Approval Requested" and "Discount Approved"), a re-quote loop (a share
of cases issue their first quote again right away), a deviating rep (who skips
"Opportunity Qualified" in a share of the cases that reach it), a discount policy (one
approval threshold for the whole window instead of the built-in 15 % -> 10 % change, and
a share of quotes above it issued without approval) and a late-paying account group
(extra days of payment delay). Their draws come from a generator of their own (seeded
from ``seed``), so the default ``ProcessEffects()`` gives exactly the log of a simulator
without effects. Per case, the truth file says which effects hit the case
(``effect_*`` columns); ``expected_payment_delay_days`` includes the late-payer days and
``expected_cycle_days`` the approval delay, not the other effects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import pandas as pd

ACTIVITIES: Final[tuple[str, ...]] = (
    "Lead Captured",
    "Opportunity Created",
    "Opportunity Qualified",
    "Meeting Held",
    "Quote Issued",
    "Discount Approval Requested",
    "Discount Approved",
    "Quote Accepted",
    "Legal Review Requested",
    "Legal Review Completed",
    "Stage Regressed",
    "Contract Signed",
    "Opportunity Won",
    "Opportunity Lost",
    "Sales Order Created",
    "Order Fulfilled",
    "Invoice Created",
    "Invoice Sent",
    "Invoice Corrected",
    "Payment Reminder Sent",
    "Payment Received",
)
STAGES: Final[tuple[str, ...]] = (
    "Lead",
    "Prospecting",
    "Qualification",
    "Proposal",
    "Negotiation",
    "Closing",
    "Closed Won",
    "Closed Lost",
)
#: the stages that end in a win/loss gate, in process order.
SALES_STAGES: Final[tuple[str, ...]] = STAGES[1:6]
EVENT_COLUMNS: Final[tuple[str, ...]] = (
    "opportunity_id",
    "activity",
    "event_time",
    "user",
    "amount",
    "currency",
    "stage",
    "owner",
    "region",
    "account",
    "lead_source",
    "product_line",
    "discount_pct",
    "contract_type",
    "payment_terms",
    "lost_reason",
)
TRUTH_COLUMNS: Final[tuple[str, ...]] = (
    "opportunity_id",
    "p_win",
    "p_win_at_creation",
    *(f"p_win_from_{s.lower()}" for s in SALES_STAGES),
    "won",
    "expected_payment_delay_days",
    "payment_delay_days",
    "expected_cycle_days",
    "cycle_days",
    "rep_skill",
    "account_habit_days",
    "workload",
    "u_health",
    "open_at_extraction",
    "effect_requote_loop",
    "effect_skipped_qualification",
    "effect_bypassed_approvals",
    "effect_late_payer",
)

REGIONS: Final = ("North America", "EMEA North", "EMEA South", "APAC", "LATAM")
CURRENCIES: Final = ("USD", "EUR")
_REGION_CURRENCY = np.array([0, 1, 1, 0, 0])
_FX_PER_USD = np.array([1.0, 0.92])  # local currency units per USD
_REGION_WEIGHTS = np.array([0.32, 0.20, 0.18, 0.18, 0.12])
_REPS_PER_REGION = (14, 9, 8, 8, 6)  # 45 reps
_REGION_DELAY = np.array([0.0, -3.0, 7.0, 2.0, 10.0])  # days late vs due, per region

LEAD_SOURCES: Final = ("web", "referral", "event", "partner", "outbound")
_LEAD_SOURCE_WEIGHTS = np.array([0.30, 0.15, 0.15, 0.15, 0.25])
_LEAD_SOURCE_LOGIT = np.array([0.0, 0.8, 0.15, 0.4, -0.6])

PRODUCT_LINES: Final = ("Software", "Hardware", "Services", "Support")
_PRODUCT_WEIGHTS = np.array([0.40, 0.20, 0.20, 0.20])
_PRODUCT_LOGIT = np.array([0.2, 0.0, -0.15, 0.4])
_PRODUCT_MEDIAN_USD = np.array([30_000.0, 60_000.0, 40_000.0, 12_000.0])
_FULFIL_MEDIAN_DAYS = np.array([2.0, 18.0, 30.0, 1.5])

CONTRACT_TYPES: Final = ("standard", "non-standard")
PAYMENT_TERMS: Final = ("Net 30", "Net 45", "Net 60", "Net 90")
_TERMS_DAYS = np.array([30.0, 45.0, 60.0, 90.0])
_TERMS_DELAY = np.array([0.0, 2.0, 4.0, 7.0])
_REGION_TERMS_WEIGHTS = np.array(
    [
        [0.55, 0.15, 0.20, 0.10],
        [0.50, 0.20, 0.25, 0.05],
        [0.20, 0.20, 0.40, 0.20],
        [0.45, 0.20, 0.25, 0.10],
        [0.30, 0.20, 0.30, 0.20],
    ]
)

LOST_REASONS: Final = ("price", "competitor", "no budget", "no decision", "timing")
# rows: sales stage of the loss; early losses are about budget, late ones about price.
_LOST_REASON_LOGITS = np.array(
    [
        [-1.5, -0.4, 0.9, 0.1, 0.4],
        [-1.0, 0.0, 0.6, 0.2, 0.2],
        [0.2, 0.4, -0.2, 0.1, -0.2],
        [0.5, 0.5, -0.8, 0.2, -0.3],
        [0.1, 0.3, -1.2, 0.7, 0.4],
    ]
)

_BASE_LOGIT = -0.4
_GATE_CONST = np.array([1.0, 1.3, 1.5, 1.9, 2.8])  # later gates pass more easily
_AMOUNT_SLOPE = 0.35
_REF_USD = 30_000.0
_WORKLOAD_WINDOW_DAYS = 60.0
_WORKLOAD_THRESHOLD = 1.25  # x the average rep load in the window
_QUARTER_END_DAYS = 21.0
_QUARTER_END_SPEEDUP = 0.55  # gap factor in Negotiation/Closing near quarter end
_DRIFT_AT = 0.6  # share of the window where the approval policy changes
_OPEN_H, _CLOSE_H = 8.0 / 24.0, 18.0 / 24.0
_SALES_PACE = 1.4  # scales every sales gap: B2B cycles run for months
_MAX_REPEAT = 4  # cap of meetings per stage and of re-quotes
_MAX_REMINDERS = 10
_MAX_SALES_GAP_DAYS = 90.0
# mean forward shift that business hours and weekends add to an event (measured once on
# uniform times); used by the analytic expected cycle time only.
_BUSINESS_SHIFT_DAYS = 0.62
_HEALTH_WEIGHT = 0.7  # weight of the latent deal health in the win logit
_LOGIT_NOISE = 0.3  # sd of the deal's own noise in the win logit
_RAPPORT_SHARE = 0.7  # correlation of a deal's health with its account's relationship
_RESPONSE_SLOPE = 0.7  # engaged buyers (high health) take the first call sooner
_SIZE_DELAY = 2.0  # days of payment delay per log-unit of deal size (e^1 x larger)
_HEALTH_DELAY = 2.0  # days of payment delay per standard deviation of deal health
_PACE_SLOPE = 0.3  # unhealthy deals drag: every rep-paced gap grows as health falls


@dataclass(frozen=True)
class ProcessEffects:
    """Process effects to inject, each with a known size; the defaults inject nothing.

    ``approval_delay_days``: added to every discount approval's wait (a lognormal with
    this median and sigma 0.3), an approval bottleneck.
    ``requote_loop_rate``: share of cases with a first quote that issue it again right
    after (a "Quote Issued" loop 1-3 days later, a slightly higher discount).
    ``deviating_rep`` / ``deviation_rate``: this rep ("Rep 07") skips "Opportunity
    Qualified" in this share of the cases that reach it (the stage still changes).
    ``discount_threshold``: one approval threshold (percent) for the whole window in
    place of the built-in 15 -> 10 change; ``approval_bypass_rate``: share of quotes above
    the threshold issued without the approval loop (policy violations).
    ``late_payer_share`` / ``late_payer_days``: this share of accounts pays this many
    days later than the rest would.
    """

    approval_delay_days: float = 0.0
    requote_loop_rate: float = 0.0
    deviating_rep: str | None = None
    deviation_rate: float = 0.0
    discount_threshold: float | None = None
    approval_bypass_rate: float = 0.0
    late_payer_share: float = 0.0
    late_payer_days: float = 0.0

    def __post_init__(self) -> None:
        for name in ("requote_loop_rate", "deviation_rate", "approval_bypass_rate",
                     "late_payer_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a share between 0 and 1")
        if self.approval_delay_days < 0:
            raise ValueError("approval_delay_days must not be negative")
        if self.discount_threshold is not None and not 0 <= self.discount_threshold <= 100:
            raise ValueError("discount_threshold must be a percentage")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _expected_win(known_logit: np.ndarray, sd: float, nodes: int = 40) -> np.ndarray:
    """E[prod_j sigmoid(known_logit + e + c_j)] over e ~ N(0, sd^2): the win probability
    of a deal whose logit is known up to a normal part (Gauss-Hermite quadrature)."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-x^2 / 2)
    w = w / w.sum()
    logits = known_logit[:, None, None] + sd * x[None, :, None] + _GATE_CONST[None, None, :]
    return (np.prod(_sigmoid(logits), axis=2) * w[None, :]).sum(axis=1)


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    """Abramowitz-Stegun 7.1.26; avoids a SciPy dependency for the expected-cycle estimate."""
    z = np.abs(x) / np.sqrt(2.0)
    k = 1.0 / (1.0 + 0.3275911 * z)
    poly = k * (0.254829592 + k * (-0.284496736 + k * (1.421413741 + k * (-1.453152027
                                                                          + k * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


def _lognormal_mean(median: float | np.ndarray, sigma: float) -> float | np.ndarray:
    return median * np.exp(0.5 * sigma * sigma)


def _poisson_sf(lam: np.ndarray, k: int) -> np.ndarray:
    """P(N > k) for N ~ Poisson(lam): whether the (k+1)-th capped repeat happens."""
    pmf = np.exp(-lam)
    cdf = pmf.copy()
    for i in range(1, k + 1):
        pmf = pmf * lam / i
        cdf = cdf + pmf
    return np.clip(1.0 - cdf, 0.0, 1.0)


def _expected_capped_poisson(lam: np.ndarray, cap: int) -> np.ndarray:
    """E[min(N, cap)] for N ~ Poisson(lam): the expected count of a capped repeat."""
    return sum(_poisson_sf(lam, k) for k in range(cap))


def _business_time(t: np.ndarray, rng: np.random.Generator, weekday0: int) -> np.ndarray:
    """Move times (days since the origin's midnight) forward into office hours.

    Only forward, so a chain ``prev + gap`` stays ordered; times outside 08-18 get a
    uniform time in the next opening window (the raw time of day of a gap in days means
    nothing), weekend days go to Monday. ``weekday0`` is the origin's weekday (Monday 0).
    """
    day = np.floor(t)
    tod = t - day
    fresh = rng.uniform(_OPEN_H, _CLOSE_H, t.shape)
    late = tod >= _CLOSE_H
    tod = np.where((tod < _OPEN_H) | late, fresh, tod)
    day = day + late
    weekday = (day.astype(np.int64) + weekday0) % 7
    day = day + np.where(weekday == 5, 2.0, np.where(weekday == 6, 1.0, 0.0))
    return day + tod


def _days_to_quarter_end(t: np.ndarray, origin_day: np.datetime64) -> np.ndarray:
    """Days left in the calendar quarter (= fiscal quarter here), for quarter-end pushes."""
    day = origin_day + np.floor(t).astype(np.int64).astype("timedelta64[D]")
    month = day.astype("datetime64[M]")
    month_of_quarter = month.astype(np.int64) % 12 % 3
    next_quarter = (month - month_of_quarter + 3).astype("datetime64[D]")
    return (next_quarter - day).astype(np.int64) - (t - np.floor(t))


@dataclass
class _Events:
    """Event blocks in generation order; one block per process step."""

    case: list[np.ndarray] = field(default_factory=list)
    activity: list[np.ndarray] = field(default_factory=list)
    stage: list[np.ndarray] = field(default_factory=list)
    user: list[np.ndarray] = field(default_factory=list)
    time: list[np.ndarray] = field(default_factory=list)
    discount: list[np.ndarray] = field(default_factory=list)
    reason: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        mask: np.ndarray,
        activity: str,
        stage: str | np.ndarray,
        user: np.ndarray,
        time: np.ndarray,
        discount: np.ndarray | None = None,
        reason: np.ndarray | None = None,
    ) -> None:
        idx = np.flatnonzero(mask)
        n = idx.size
        self.case.append(idx)
        self.activity.append(np.full(n, ACTIVITIES.index(activity), dtype=np.int8))
        if isinstance(stage, str):
            self.stage.append(np.full(n, STAGES.index(stage), dtype=np.int8))
        else:
            self.stage.append(stage[idx].astype(np.int8))
        self.user.append(user[idx].astype(np.int32))
        self.time.append(time[idx])
        self.discount.append(discount[idx] if discount is not None else np.full(n, np.nan))
        self.reason.append(
            reason[idx].astype(np.int8) if reason is not None else np.full(n, -1, np.int8)
        )


def _str_column(vocab: list[str] | tuple[str, ...], codes: np.ndarray) -> pd.Series:
    """Strings by code; code -1 is missing. PyArrow's take is much faster than objects."""
    missing = codes < 0
    try:
        import pyarrow as pa

        values = pa.array(list(vocab), type=pa.large_string())
        taken = values.take(pa.array(np.where(missing, 0, codes), mask=missing))
        return pd.Series(pd.array(taken, dtype="str"))
    except ImportError:  # pragma: no cover - pyarrow is a project dependency
        objects = np.asarray(list(vocab), dtype=object)[np.where(missing, 0, codes)]
        objects[missing] = None
        return pd.Series(objects, dtype="str")


def simulate_log(
    n_cases: int, seed: int, start: str = "2022-01-01", years: float = 3.0,
    effects: ProcessEffects | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate ``n_cases`` opportunities started over ``years``; returns (events, truth).

    Same ``seed`` -> identical frames. ``events`` is the export a CRM would give
    (``EVENT_COLUMNS``), cut at the extraction date ``start + years``; ``truth`` has one
    row per case (``TRUTH_COLUMNS``) with the oracle probabilities and realised outcomes of
    the full, uncut simulation, and must never be joined into the features.
    """
    if n_cases < 1:
        raise ValueError("n_cases must be at least 1")
    if years <= 0.05:
        raise ValueError("years must cover more than a few weeks")
    rng = np.random.default_rng(seed)
    effects = effects if effects is not None else ProcessEffects()
    effect_rng = np.random.default_rng([seed, 16])  # the effects' own draws (docstring)
    origin = pd.Timestamp(start)
    origin = origin.tz_localize("UTC") if origin.tz is None else origin.tz_convert("UTC")
    origin = origin.normalize()
    origin_day = np.datetime64(origin.tz_localize(None).date(), "D")
    weekday0 = origin.weekday()
    horizon = float(round(years * 365.25))  # extraction date, in days since origin
    n = n_cases

    # --- the world: regions, reps, accounts -------------------------------------------
    rep_region = np.repeat(np.arange(len(REGIONS)), _REPS_PER_REGION)
    n_reps = rep_region.size
    rep_skill = rng.normal(0.0, 0.5, n_reps)
    rep_speed = rng.lognormal(0.0, 0.3, n_reps)  # > 1: slower than average
    rep_capacity = rng.lognormal(0.0, 0.35, n_reps)  # share of new leads routed to the rep

    n_acc = max(n // 6, 10)
    acc_region = rng.choice(len(REGIONS), n_acc, p=_REGION_WEIGHTS)
    acc_rep = np.empty(n_acc, dtype=np.int64)
    for r in range(len(REGIONS)):  # loop over regions, not accounts
        reps = np.flatnonzero(rep_region == r)
        in_r = acc_region == r
        w = rep_capacity[reps] / rep_capacity[reps].sum()
        acc_rep[in_r] = rng.choice(reps, in_r.sum(), p=w)
    acc_habit = rng.normal(3.0, 12.0, n_acc)
    acc_late = effect_rng.random(n_acc) < effects.late_payer_share
    acc_rapport = rng.normal(0.0, 1.0, n_acc)  # the account's relationship with the vendor
    acc_size = rng.normal(0.0, 0.6, n_acc)
    acc_terms = (
        rng.random(n_acc)[:, None] > np.cumsum(_REGION_TERMS_WEIGHTS[acc_region], axis=1)
    ).sum(axis=1)
    zipf = np.arange(1, n_acc + 1, dtype=float) ** -0.55
    acc_weight = rng.permutation(zipf / zipf.sum())  # so ids do not reveal the frequency

    # --- case starts: growing arrivals over the window, in business hours ---------------
    span = horizon - 3.0  # business-hour shifts must not push a start past extraction
    growth = np.log(1.6) / span
    raw = np.log1p(rng.random(n) * np.expm1(growth * span)) / growth
    t0 = np.sort(_business_time(raw, rng, weekday0))

    # --- case attributes ---------------------------------------------------------------
    account = rng.choice(n_acc, n, p=acc_weight)
    region = acc_region[account]
    owner = acc_rep[account].copy()
    reassigned = rng.random(n) < 0.2  # some deals go to another rep of the region
    for r in range(len(REGIONS)):
        reps = np.flatnonzero(rep_region == r)
        sel = reassigned & (region == r)
        owner[sel] = rng.choice(reps, sel.sum(), p=rep_capacity[reps] / rep_capacity[reps].sum())
    lead_source = rng.choice(len(LEAD_SOURCES), n, p=_LEAD_SOURCE_WEIGHTS)
    product = rng.choice(len(PRODUCT_LINES), n, p=_PRODUCT_WEIGHTS)
    currency = _REGION_CURRENCY[region]
    fx = _FX_PER_USD[currency]
    usd = _PRODUCT_MEDIAN_USD[product] * np.exp(acc_size[account] + rng.normal(0.0, 0.7, n))
    amount = np.maximum(np.round(usd * fx / 10.0) * 10.0, 500.0)
    log_size = np.log(amount / fx / _REF_USD)
    non_standard = rng.random(n) < _sigmoid(-1.6 + 0.7 * log_size + 0.5 * (product == 2))
    terms = np.where(rng.random(n) < 0.85, acc_terms[account], rng.integers(0, 4, n))

    # workload: the owner's cases started in the previous 60 days (cross-case effect)
    key = owner * (horizon + 1000.0) + t0
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    workload = (
        np.searchsorted(sorted_key, key, "left")
        - np.searchsorted(sorted_key, key - _WORKLOAD_WINDOW_DAYS, "left")
    ).astype(np.int64)
    mean_load = n * _WORKLOAD_WINDOW_DAYS / (span * n_reps)
    excess = np.clip(workload / (_WORKLOAD_THRESHOLD * mean_load) - 1.0, 0.0, 1.5)

    # deal health: partly the account's relationship (its earlier deals reveal it), partly
    # this deal's own; still N(0, 1)
    u = (_RAPPORT_SHARE * acc_rapport[account]
         + np.sqrt(1.0 - _RAPPORT_SHARE**2) * rng.normal(0.0, 1.0, n))
    noise = rng.normal(0.0, _LOGIT_NOISE, n)
    logit = (
        _BASE_LOGIT
        + _LEAD_SOURCE_LOGIT[lead_source]
        + _PRODUCT_LOGIT[product]
        - _AMOUNT_SLOPE * log_size
        + rep_skill[owner]
        - 0.8 * excess
        + _HEALTH_WEIGHT * u
        + noise
    )
    q = _sigmoid(logit[:, None] + _GATE_CONST[None, :])  # (n, 5) gate pass probabilities
    p_from = np.cumprod(q[:, ::-1], axis=1)[:, ::-1]
    # what could be known before the deal's first event: all of the logit but the deal's
    # own share of its health and the noise, which are integrated out
    known_logit = (logit - noise - _HEALTH_WEIGHT * (u - _RAPPORT_SHARE * acc_rapport[account]))
    p_at_creation = _expected_win(known_logit, np.sqrt(
        (_HEALTH_WEIGHT**2) * (1.0 - _RAPPORT_SHARE**2) + _LOGIT_NOISE**2))

    pace = (
        _SALES_PACE
        * rep_speed[owner]
        * np.exp(0.12 * log_size)
        * (1.0 + 0.4 * excess)
        * np.exp(-_PACE_SLOPE * u - 0.5 * _PACE_SLOPE**2)  # mean 1 over u
    )
    p_stall = _sigmoid(-1.8 - 1.3 * u)
    stall_mean = 1.0 + p_stall * (3.75 - 1.0)
    drift_t = _DRIFT_AT * horizon
    disc_mean = 7.0 - 2.0 * u + 1.0 * log_size  # unhealthy and big deals get more discount
    qe_mean = 1.0 - (1.0 - _QUARTER_END_SPEEDUP) * _QUARTER_END_DAYS / 91.3

    # --- users -------------------------------------------------------------------------
    users = [f"Rep {i + 1:02d}" for i in range(n_reps)]
    base = len(users)
    u_web, u_mops, u_portal = base, base + 1, base + 2
    users += ["Web Form", "Marketing Ops", "Partner Portal"]
    u_sdr = len(users)
    users += [f"SDR {i + 1:02d}" for i in range(6)]
    u_mgr = len(users)
    users += [f"Sales Manager {r}" for r in REGIONS]
    u_desk = len(users)
    users += ["Deal Desk"]
    u_legal = len(users)
    users += [f"Legal {i + 1:02d}" for i in range(3)]
    u_order = len(users)
    users += [f"Order Desk {i + 1:02d}" for i in range(3)]
    u_fulfil = len(users)
    users += ["Fulfilment"]
    u_billing = len(users)
    users += [f"Billing {i + 1:02d}" for i in range(4)]
    u_dunning = len(users)
    users += ["Dunning Bot"]
    u_ar = len(users)
    users += [f"AR Clerk {i + 1:02d}" for i in range(2)]

    def pool(first: int, size: int) -> np.ndarray:
        return first + rng.integers(0, size, n)

    lead_user = np.select(
        [lead_source == 0, lead_source == 2, lead_source == 3, lead_source == 4],
        [np.full(n, u_web), np.full(n, u_mops), np.full(n, u_portal), pool(u_sdr, 6)],
        owner,
    )

    # --- the sales process -------------------------------------------------------------
    ev = _Events()
    t = t0.copy()
    alive = np.ones(n, dtype=bool)
    reach = np.ones(n)  # P(the case is still open at this point), for the expected cycle
    exp_cycle = np.zeros(n)
    end_t = np.full(n, np.nan)
    discount = np.zeros(n)
    has_quote = np.zeros(n, dtype=bool)
    ev.add(alive, "Lead Captured", "Lead", lead_user, t)

    def gap(median: float | np.ndarray, sigma: float,
            g: np.random.Generator = rng) -> np.ndarray:
        return median * np.exp(sigma * g.standard_normal(n))

    def sales_gap(median: float, sigma: float = 0.7) -> np.ndarray:
        """A rep-paced gap, capped because CRMs nag about (and reps touch) stale deals."""
        return np.minimum(gap(median, sigma) * pace, _MAX_SALES_GAP_DAYS)

    def qe_factor(late_stage: bool) -> np.ndarray | float:
        if not late_stage:
            return 1.0
        near = _days_to_quarter_end(t, origin_day) < _QUARTER_END_DAYS
        return np.where(near, _QUARTER_END_SPEEDUP, 1.0)

    def step(mask: np.ndarray, delta: np.ndarray, g: np.random.Generator = rng) -> None:
        moved = _business_time(t + delta, g, weekday0)
        t[mask] = moved[mask]

    def expect(
        p_occurs: float | np.ndarray, mean_gap: float | np.ndarray, events: int = 1
    ) -> None:
        """Add a step's expected duration, weighted by the chance the case gets there."""
        nonlocal exp_cycle
        exp_cycle = exp_cycle + reach * p_occurs * (mean_gap + events * _BUSINESS_SHIFT_DAYS)

    def meetings(stage: str, lam: np.ndarray, median: float, late: bool) -> None:
        count = np.minimum(rng.poisson(lam), _MAX_REPEAT)
        for k in range(_MAX_REPEAT):
            m = alive & (count > k)
            step(m, sales_gap(median) * qe_factor(late))
            ev.add(m, "Meeting Held", stage, owner, t)
        mean = _lognormal_mean(median, 0.7) * pace * (qe_mean if late else 1.0)
        expect(_expected_capped_poisson(lam, _MAX_REPEAT), mean)

    def threshold(at: np.ndarray) -> np.ndarray | float:
        """The discount above which a quote issued at ``at`` needs approval."""
        if effects.discount_threshold is not None:
            return effects.discount_threshold
        return np.where(at >= drift_t, 10.0, 15.0)

    def approval_prob(index: float | np.ndarray) -> np.ndarray:
        """P(quote number ``index`` needs approval), normal approximation of the discount."""
        thr = threshold(t0)
        mean = disc_mean + 2.25 * index + 3.0 * _QUARTER_END_DAYS / 91.3
        return 1.0 - _norm_cdf((thr - mean) / np.sqrt(9.0 + 2.25 * index))

    def expect_approval(p_quote: float | np.ndarray, index: float | np.ndarray) -> None:
        desk = np.where(t0 >= drift_t, 0.6, 2.5)
        expect(p_quote * approval_prob(index) * (1.0 - effects.approval_bypass_rate),
               _lognormal_mean(0.15, 0.5) + _lognormal_mean(desk, 0.6)
               + _lognormal_mean(effects.approval_delay_days, 0.3), events=2)

    bypassed = np.zeros(n, dtype=np.int64)

    def quote(mask: np.ndarray, stage: str, first: bool, g: np.random.Generator = rng) -> None:
        nonlocal discount
        near = _days_to_quarter_end(t, origin_day) < _QUARTER_END_DAYS
        if first:
            new = np.clip(disc_mean + 3.0 * near + g.normal(0.0, 3.0, n), 0.0, 40.0)
        else:
            new = np.minimum(discount + np.abs(g.normal(2.2, 1.5, n)) + 2.0 * near, 45.0)
        discount = np.where(mask, np.round(new, 1), discount)
        has_quote[mask] = True
        ev.add(mask, "Quote Issued", stage, owner, t, discount=discount)
        after_drift = t >= drift_t
        needs = mask & (discount > threshold(t))
        if effects.approval_bypass_rate > 0:
            bypass = needs & (effect_rng.random(n) < effects.approval_bypass_rate)
            bypassed[bypass] += 1
            needs = needs & ~bypass
        step(needs, gap(0.15, 0.5, g), g)
        ev.add(needs, "Discount Approval Requested", stage, owner, t)
        wait = gap(np.where(after_drift, 0.6, 2.5), 0.6, g)
        if effects.approval_delay_days > 0:
            wait = wait + effects.approval_delay_days * np.exp(
                0.3 * effect_rng.standard_normal(n))
        step(needs, wait, g)
        approver = np.where(after_drift, u_desk, u_mgr + region)
        ev.add(needs, "Discount Approved", stage, approver, t)

    def gate(j: int, median: float, late: bool) -> None:
        """Leave sales stage j: lose with 1 - q_j, else move ``t`` to the next entry."""
        nonlocal alive, reach
        stalled = rng.random(n) < p_stall
        stall = np.where(stalled, rng.uniform(2.5, 5.0, n), 1.0)
        step(alive, np.minimum(sales_gap(median) * stall, _MAX_SALES_GAP_DAYS) * qe_factor(late))
        expect(1.0, _lognormal_mean(median, 0.7) * pace * stall_mean * (qe_mean if late else 1.0))
        passed = rng.random(n) < q[:, j]
        logits = _LOST_REASON_LOGITS[j][None, :] + np.zeros((n, 1))
        logits[:, 0] += np.where(has_quote, 0.15 * (discount - 10.0), 0.0)
        logits[:, 3] += 0.7 * stalled
        reason = np.argmax(logits + rng.gumbel(size=(n, len(LOST_REASONS))), axis=1)
        lost = alive & ~passed
        ev.add(lost, "Opportunity Lost", "Closed Lost", owner, t, reason=reason)
        end_t[lost] = t[lost]
        alive = alive & passed
        reach = reach * q[:, j]

    late = False
    response = np.exp(-_RESPONSE_SLOPE * u)
    step(alive, np.minimum(gap(1.5, 0.8) * pace * response, _MAX_SALES_GAP_DAYS))
    expect(1.0, _lognormal_mean(1.5, 0.8) * pace * response)
    ev.add(alive, "Opportunity Created", "Prospecting", owner, t)
    meetings("Prospecting", np.exp(-0.2 + 0.8 * u), 4.0, late)
    gate(0, 6.0, late)

    skip_qualification = np.zeros(n, dtype=bool)
    if effects.deviating_rep is not None:
        if effects.deviating_rep not in users[:n_reps]:
            raise ValueError(f"deviating_rep {effects.deviating_rep!r} is not a rep; the reps "
                             f"are {users[0]} .. {users[n_reps - 1]}")
        by_rep = owner == users.index(effects.deviating_rep)
        skip_qualification = alive & by_rep & (effect_rng.random(n) < effects.deviation_rate)
    ev.add(alive & ~skip_qualification, "Opportunity Qualified", "Qualification", owner, t)
    meetings("Qualification", np.exp(0.0 + 0.6 * u), 5.0, late)
    gate(1, 7.0, late)

    quote(alive, "Proposal", first=True)
    requote_loop = np.zeros(n, dtype=bool)
    if effects.requote_loop_rate > 0:
        requote_loop = alive & (effect_rng.random(n) < effects.requote_loop_rate)
        step(requote_loop, effect_rng.uniform(1.0, 3.0, n), effect_rng)
        quote(requote_loop, "Proposal", first=False, g=effect_rng)
    expect_approval(1.0, 0.0)
    meetings("Proposal", np.exp(-0.4 + 0.3 * u), 5.0, late)
    gate(2, 8.0, late)

    late = True
    ev.add(alive, "Meeting Held", "Negotiation", owner, t)
    meeting_count = np.minimum(rng.poisson(np.exp(-0.3 + 0.3 * u)), _MAX_REPEAT)
    requote_lam = np.exp(-0.5 - 0.6 * u + 0.25 * log_size)
    requotes = np.minimum(rng.poisson(requote_lam), _MAX_REPEAT)
    for k in range(_MAX_REPEAT):
        m = alive & (meeting_count > k)
        step(m, sales_gap(5.0) * qe_factor(late))
        ev.add(m, "Meeting Held", "Negotiation", owner, t)
        r = alive & (requotes > k)
        step(r, sales_gap(6.0) * qe_factor(late))
        quote(r, "Negotiation", first=False)
    expected_requotes = _expected_capped_poisson(requote_lam, _MAX_REPEAT)
    expect(_expected_capped_poisson(np.exp(-0.3 + 0.3 * u), _MAX_REPEAT),
           _lognormal_mean(5.0, 0.7) * pace * qe_mean)
    expect(expected_requotes, _lognormal_mean(6.0, 0.7) * pace * qe_mean)
    for k in range(_MAX_REPEAT):
        expect_approval(_poisson_sf(requote_lam, k), k + 1.0)
    # stage regression: back to Proposal for a re-quote, then negotiate again
    p_regress = _sigmoid(-2.2 - 0.9 * u)
    regress = alive & (rng.random(n) < p_regress)
    step(regress, sales_gap(5.0, 0.7))
    ev.add(regress, "Stage Regressed", "Proposal", owner, t)
    step(regress, sales_gap(3.0, 0.7))
    quote(regress, "Proposal", first=False)
    step(regress, sales_gap(4.0, 0.7))
    ev.add(regress, "Meeting Held", "Negotiation", owner, t)
    expect(p_regress, _lognormal_mean(5.0 + 3.0 + 4.0, 0.7) * pace, events=3)
    expect_approval(p_regress, 1.0 + expected_requotes)
    gate(3, 7.0, late)

    ev.add(alive, "Quote Accepted", "Closing", owner, t)
    legal = alive & non_standard
    step(legal, sales_gap(0.5, 0.6))
    ev.add(legal, "Legal Review Requested", "Closing", owner, t)
    step(legal, gap(8.0, 0.6))
    ev.add(legal, "Legal Review Completed", "Closing", pool(u_legal, 3), t)
    expect(non_standard, _lognormal_mean(0.5, 0.6) * pace + _lognormal_mean(8.0, 0.6), events=2)
    gate(4, 4.0, late)

    won = alive.copy()
    ev.add(won, "Contract Signed", "Closing", owner, t)
    step(won, gap(0.2, 0.5))
    ev.add(won, "Opportunity Won", "Closed Won", owner, t)
    expect(1.0, _lognormal_mean(0.2, 0.5))

    # --- order to cash -----------------------------------------------------------------
    step(won, gap(1.5, 0.6))
    ev.add(won, "Sales Order Created", "Closed Won", pool(u_order, 3), t)
    step(won, gap(_FULFIL_MEDIAN_DAYS[product], 0.5))
    ev.add(won, "Order Fulfilled", "Closed Won", np.full(n, u_fulfil), t)
    step(won, gap(1.5, 0.6))
    invoice_t = t.copy()
    ev.add(won, "Invoice Created", "Closed Won", pool(u_billing, 4), t)
    step(won, gap(0.4, 0.6))
    ev.add(won, "Invoice Sent", "Closed Won", pool(u_billing, 4), t)
    p_correct = _sigmoid(-2.4 + 1.0 * non_standard + 0.8 * (product == 2) + 0.3 * (region == 4))
    corrected = won & (rng.random(n) < p_correct)
    step(corrected, np.minimum(gap(7.0, 0.5), 25.0))
    ev.add(corrected, "Invoice Corrected", "Closed Won", pool(u_billing, 4), t)
    step(corrected, gap(1.0, 0.5))
    ev.add(corrected, "Invoice Sent", "Closed Won", pool(u_billing, 4), t)
    last_sent = t.copy()

    terms_days = _TERMS_DAYS[terms]
    habit = acc_habit[account]
    # large invoices wait for more sign-offs at the customer; deals that were hard to win
    # (low health) are paid reluctantly
    delay_core = (habit + _TERMS_DELAY[terms] + _REGION_DELAY[region]
                  + _SIZE_DELAY * log_size - _HEALTH_DELAY * u)
    expected_delay = delay_core + 8.0 * corrected
    late_payer = acc_late[account]
    expected_delay = expected_delay + effects.late_payer_days * late_payer
    delay = expected_delay + rng.normal(0.0, 4.0, n)
    due = invoice_t + terms_days
    pay_t = _business_time(np.maximum(due + delay, last_sent + 1.0), rng, weekday0)
    for k in range(_MAX_REMINDERS):
        remind_t = _business_time(due + 7.0 + 14.0 * k, rng, weekday0)
        m = won & (remind_t < pay_t) & (remind_t > last_sent)
        ev.add(m, "Payment Reminder Sent", "Closed Won", np.full(n, u_dunning), remind_t)
    ev.add(won, "Payment Received", "Closed Won", pool(u_ar, 2), pay_t)
    end_t[won] = pay_t[won]
    expect(
        1.0,
        _lognormal_mean(1.5, 0.6) * 2.0
        + _lognormal_mean(_FULFIL_MEDIAN_DAYS[product], 0.5)
        + terms_days
        + delay_core
        + 8.0 * p_correct,
        events=4,
    )

    # --- assemble: round to seconds, cut at the extraction date --------------------------
    case = np.concatenate(ev.case)
    block = np.concatenate([np.full(c.size, i, dtype=np.int32) for i, c in enumerate(ev.case)])
    secs = np.round(np.concatenate(ev.time) * 86400.0).astype(np.int64)
    order = np.lexsort((block, secs, case))
    horizon_secs = int(horizon * 86400)
    order = order[secs[order] <= horizon_secs]
    case = case[order]
    origin_us = int(origin.timestamp()) * 1_000_000
    times = pd.to_datetime(origin_us + secs[order] * 1_000_000, unit="us", utc=True)

    id_width = max(6, len(str(n)))
    opp_ids = [f"OPP-{i + 1:0{id_width}d}" for i in range(n)]
    acc_width = max(4, len(str(n_acc)))
    acc_ids = [f"ACC-{i + 1:0{acc_width}d}" for i in range(n_acc)]
    reason_codes = np.concatenate(ev.reason)[order].astype(np.int64)
    events = pd.DataFrame(
        {
            "opportunity_id": _str_column(opp_ids, case),
            "activity": _str_column(ACTIVITIES, np.concatenate(ev.activity)[order]),
            "event_time": pd.Series(times).astype("datetime64[us, UTC]"),
            "user": _str_column(users, np.concatenate(ev.user)[order]),
            "amount": amount[case],
            "currency": _str_column(CURRENCIES, currency[case]),
            "stage": _str_column(STAGES, np.concatenate(ev.stage)[order]),
            "owner": _str_column(users[:n_reps], owner[case]),
            "region": _str_column(REGIONS, region[case]),
            "account": _str_column(acc_ids, account[case]),
            "lead_source": _str_column(LEAD_SOURCES, lead_source[case]),
            "product_line": _str_column(PRODUCT_LINES, product[case]),
            "discount_pct": np.concatenate(ev.discount)[order],
            "contract_type": _str_column(CONTRACT_TYPES, non_standard[case].astype(np.int64)),
            "payment_terms": _str_column(PAYMENT_TERMS, terms[case]),
            "lost_reason": _str_column(LOST_REASONS, reason_codes),
        },
        columns=list(EVENT_COLUMNS),
    )

    start_secs = np.round(t0 * 86400.0)
    end_secs = np.round(end_t * 86400.0)
    due_secs = np.round(invoice_t * 86400.0) + terms_days * 86400.0
    truth = pd.DataFrame(
        {
            "opportunity_id": _str_column(opp_ids, np.arange(n)),
            "p_win": p_from[:, 0],
            "p_win_at_creation": p_at_creation,
            **{f"p_win_from_{s.lower()}": p_from[:, j] for j, s in enumerate(SALES_STAGES)},
            "won": won,
            "expected_payment_delay_days": np.where(won, expected_delay, np.nan),
            "payment_delay_days": np.where(won, (end_secs - due_secs) / 86400.0, np.nan),
            "expected_cycle_days": exp_cycle,
            "cycle_days": (end_secs - start_secs) / 86400.0,
            "rep_skill": rep_skill[owner],
            "account_habit_days": habit,
            "workload": workload,
            "u_health": u,
            "open_at_extraction": end_secs > horizon_secs,
            "effect_requote_loop": requote_loop,
            "effect_skipped_qualification": skip_qualification,
            "effect_bypassed_approvals": bypassed,
            "effect_late_payer": late_payer,
        },
        columns=list(TRUTH_COLUMNS),
    )
    return events, truth
