"""Small, pure statistics used in adjudication reports.

Every function takes plain Python sequences (or Polars series) and returns plain Python values
(``float``, ``int``, ``str``, frozen dataclasses of those), so results can go straight into JSON
via :func:`dataclasses.asdict`. The columns are Polars' (numpy alone takes longer to import than
a report takes to compute). Where a quantity is undefined (no data), the function returns
``None`` rather than ``nan``. Invalid input (lengths that differ, counts out of range, a
confidence level outside (0, 1), missing values) raises :class:`ValueError`: those are bugs
in the caller, not outcomes to report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from services.adjudicator.special import (
    beta_quantile,
    expit,
    logit,
    normal_quantile,
    normal_tail,
)

__all__ = [
    "PairedTest",
    "ProportionCI",
    "clopper_pearson",
    "clustered_proportion_ci",
    "cohen_kappa",
    "paired_wilcoxon",
    "proportion",
]

CLUSTER_LOGIT_METHOD = "ratio estimator, cluster-robust variance, logit Wald interval"
CLUSTER_EXACT_METHOD = "Clopper-Pearson exact interval on tracts (no discordance, design effect 1)"


@dataclass(frozen=True)
class ProportionCI:
    """A proportion with its confidence interval and how the interval was made."""

    estimate: float
    lower: float
    upper: float
    method: str
    design_effect: float


@dataclass(frozen=True)
class PairedTest:
    """A paired two-sample test; differences are ``after - before``."""

    n_pairs: int
    n_nonzero: int
    median_before: float
    median_after: float
    median_difference: float
    statistic: float
    p_value: float
    method: str


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be strictly between 0 and 1, got {level!r}")


def _check_count(k: int, n: int) -> None:
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k!r}, n={n!r}")


def proportion(k: int, n: int) -> float | None:
    """``k / n``, or ``None`` when there is no denominator (``n == 0``)."""
    _check_count(k, n)
    if n == 0:
        return None
    return k / n


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """Exact (Clopper-Pearson) binomial confidence interval for ``k`` successes out of ``n``.

    Chosen because it guarantees at least nominal coverage at any ``n`` and any true
    proportion, which is what a regulator expects for small trial arms. Computed with
    the beta quantiles of its definition (:func:`~services.adjudicator.special.beta_quantile`,
    as ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")`` does with scipy's
    ``betaincinv``, which alone takes longer to import than a report takes); the lower limit
    is exactly 0 when ``k == 0`` and the upper limit exactly 1 when ``k == n``. Returns
    ``None`` when ``n == 0``.
    """
    _check_count(k, n)
    _check_level(level)
    if n == 0:
        return None
    alpha = 1.0 - level
    low = 0.0 if k == 0 else beta_quantile(k, n - k + 1, alpha / 2)
    high = 1.0 if k == n else beta_quantile(k + 1, n - k, 1 - alpha / 2)
    return low, high


def clustered_proportion_ci(
    successes: Sequence[int], sizes: Sequence[int], level: float = 0.95
) -> ProportionCI | None:
    """Proportion of tracts closed, with a CI that respects clustering of tracts in patients.

    Patient ``i`` has ``sizes[i]`` treated tracts, ``successes[i]`` of which closed. Tracts of
    one patient are not independent, so a binomial interval on the tract count is too narrow
    when outcomes within a patient are positively correlated.

    Method (patients are the independent sampling units; ``n`` = patients with at least one
    treated tract, ``y_i`` = closed tracts, ``m_i`` = treated tracts, ``M = sum m_i``):

    * Estimate: ratio estimator ``p = sum y_i / M`` (pooled tract-level proportion).
    * Variance: cluster-robust (design-based, Taylor-linearisation / "sandwich") variance of a
      ratio, with the usual ``n / (n - 1)`` small-sample factor::

          var(p) = n / (n - 1) * sum_i (y_i - p * m_i) ** 2 / M ** 2

    * Design effect: ``deff = max(1, var(p) / (p * (1 - p) / M))``, the variance relative to
      treating all ``M`` tracts as independent. It is floored at 1, and the interval uses
      ``deff * p * (1 - p) / M``, so the interval is never narrower than the one that treats
      tracts as independent (a robust variance below the binomial one arises mostly by chance
      with few patients, and is not relied on).
    * Interval for ``0 < p < 1``: Wald interval on the logit scale (delta method,
      ``se(logit p) = se(p) / (p * (1 - p))``, normal quantile), back-transformed with the
      inverse logit, so both limits lie strictly inside (0, 1). With every ``m_i == 1`` this
      is the ordinary logit interval for a binomial proportion with variance
      ``p * (1 - p) / (n - 1)``.
    * Interval for ``p == 0`` or ``p == 1``: the logit is infinite and the robust variance is
      zero, so the design effect (0 / 0) cannot be estimated; it is taken as 1 (the floor)
      and the interval is the Clopper-Pearson exact interval on ``M`` tracts, i.e. the
      Clopper-Pearson interval on the effective sample size ``M / deff``. This treats tracts
      as independent when no patient-level variation is observed, and is then narrower than
      an interval that assumed maximal within-patient correlation.

    Patients with ``sizes[i] == 0`` are ignored. Returns ``None`` when fewer than two
    patients have a treated tract: between-patient variability cannot be estimated from one
    patient (use :func:`proportion` for the point estimate alone).
    """
    _check_level(level)
    if len(successes) != len(sizes):
        raise ValueError(f"successes and sizes differ in length ({len(successes)} != {len(sizes)})")
    patients = pl.DataFrame(
        {"y": pl.Series(successes, dtype=pl.Float64), "m": pl.Series(sizes, dtype=pl.Float64)}
    )
    if patients.null_count().sum_horizontal().item():
        raise ValueError("successes and sizes must be counts, with no missing value")
    y, m = pl.col("y"), pl.col("m")
    bad = patients.select(pl.arg_where((m < 0) | (y < 0) | (y > m)))
    if bad.height:  # one check per patient, in columns (100,000 patients cost nothing)
        first = int(bad.item(0, 0))
        _check_count(successes[first], sizes[first])

    treated = patients.filter(m > 0)
    n = treated.height
    if n < 2:
        return None

    total_y = int(treated["y"].sum())
    total_m = int(treated["m"].sum())
    p = total_y / total_m

    if total_y in (0, total_m):
        ci = clopper_pearson(total_y, total_m, level)
        assert ci is not None  # total_m >= n >= 2
        return ProportionCI(p, ci[0], ci[1], CLUSTER_EXACT_METHOD, 1.0)

    squares = treated.select(((y - p * m) ** 2).sum()).item()
    robust_var = n / (n - 1) * float(squares) / total_m**2
    binomial_var = p * (1.0 - p) / total_m
    design_effect = max(1.0, robust_var / binomial_var)
    se_logit = math.sqrt(design_effect * binomial_var) / (p * (1.0 - p))
    z = normal_quantile(0.5 + level / 2.0)
    centre = logit(p)
    lower = expit(centre - z * se_logit)
    upper = expit(centre + z * se_logit)
    return ProportionCI(p, lower, upper, CLUSTER_LOGIT_METHOD, design_effect)


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Cohen's kappa for two raters making the same binary decision on the same items.

    ``kappa = (p_o - p_e) / (1 - p_e)``, with ``p_o`` the observed agreement and ``p_e`` the
    agreement expected by chance from each rater's own marginal rate (Cohen 1960), computed
    from exact integer counts. Returns ``None`` when there are no items.

    When ``p_e == 1`` kappa is 0 / 0; that happens only when both raters gave the same single
    answer to every item, so they agree perfectly, and 1.0 is returned (a chance-corrected
    statistic is not informative there; report the raw agreement alongside it).
    """
    if len(a) != len(b):
        raise ValueError(f"rater sequences differ in length ({len(a)} != {len(b)})")
    n = len(a)
    if n == 0:
        return None
    # Counted in columns (a report's 100,000 pairs); a missing answer counts as "no".
    x, y = (pl.Series(s, dtype=pl.Boolean, strict=False).fill_null(False) for s in (a, b))
    agree, a_yes, b_yes = (int(s.sum()) for s in ((x == y), x, y))
    # n**2 * p_e, kept in integers so p_e == 1 is detected exactly.
    chance = a_yes * b_yes + (n - a_yes) * (n - b_yes)
    if chance == n * n:
        return 1.0
    return (n * agree - chance) / (n * n - chance)


def paired_wilcoxon(before: Sequence[float], after: Sequence[float]) -> PairedTest | None:
    """Two-sided Wilcoxon signed-rank test on the paired differences ``after - before``.

    Zero differences are dropped before ranking (Wilcoxon's original ``zero_method="wilcox"``,
    also what R's ``wilcox.test`` does). The p-value is exact (null distribution of the
    signed-rank statistic) when fewer than 50 differences remain and there are no zero
    differences and no tied absolute differences; otherwise it is the normal approximation
    with tie-corrected variance and a continuity correction. That is the default rule of R's
    ``wilcox.test(paired = TRUE)`` and what ``scipy.stats.wilcoxon`` computes with those
    options, so results can be checked there (the tests check textbook values); the
    distribution is computed here because ``scipy.stats`` alone takes seconds to import.
    ``statistic`` is the two-sided statistic ``min(W+, W-)``.

    ``median_difference`` is the median of the paired differences (all pairs, zeros
    included), not the difference of the two medians.

    Returns ``None`` when no pair has a non-zero difference (including no pairs at all):
    the test is undefined. Note that with ``k`` non-zero differences the smallest attainable
    exact two-sided p-value is ``2 ** (1 - k)``, so fewer than 6 can never give p < 0.05.
    """
    if len(before) != len(after):
        raise ValueError(f"before and after differ in length ({len(before)} != {len(after)})")
    x = pl.Series(before, dtype=pl.Float64, strict=False)
    y = pl.Series(after, dtype=pl.Float64, strict=False)
    if not all(s.null_count() == 0 and s.is_finite().all() for s in (x, y)):
        raise ValueError("before and after must be finite numbers (drop missing pairs first)")
    d = y - x
    nonzero = d.filter(d != 0)
    if nonzero.len() == 0:
        return None

    has_zeros = nonzero.len() < d.len()
    w_plus, tie_sizes = _rank_sums(nonzero)
    has_ties = tie_sizes.len() < nonzero.len()
    exact = nonzero.len() < 50 and not has_zeros and not has_ties
    statistic, p_value = _signed_rank(nonzero.len(), w_plus, tie_sizes, exact)
    p_method = "exact" if exact else "normal approximation, tie-corrected, continuity-corrected"
    return PairedTest(
        n_pairs=d.len(),
        n_nonzero=nonzero.len(),
        median_before=float(x.median()),  # type: ignore[arg-type]
        median_after=float(y.median()),  # type: ignore[arg-type]
        median_difference=float(d.median()),  # type: ignore[arg-type]
        statistic=statistic,
        p_value=p_value,
        method=f"Wilcoxon signed-rank, two-sided, zero differences dropped; p-value {p_method}",
    )


def _signed_rank(n: int, w_plus: float, tie_sizes: pl.Series, exact: bool) -> tuple[float, float]:
    """``min(W+, W-)`` of ``n`` non-zero differences and its two-sided p-value: the exact null
    distribution (every sign pattern of ranks 1..n equally likely, counted by dynamic
    programming) or the normal approximation with tie-corrected variance and a continuity
    correction. ``w_plus`` and ``tie_sizes``: :func:`_rank_sums`."""
    total = n * (n + 1) // 2
    statistic = min(w_plus, total - w_plus)
    if exact:
        counts = [1] + [0] * total  # ways to reach each sum with ranks 1..rank, exact integers
        for rank in range(1, n + 1):
            counts[rank:] = [a + b for a, b in zip(counts[rank:], counts, strict=False)]
        p = 2.0 * sum(counts[: int(statistic) + 1]) / 2.0**n
        return statistic, min(p, 1.0)
    mean = n * (n + 1) / 4
    ties = tie_sizes.cast(pl.Int64)
    variance = n * (n + 1) * (2 * n + 1) / 24 - float((ties**3 - ties).sum()) / 48
    shift = statistic - mean
    step = math.copysign(0.5, shift) if shift else 0.0  # continuity: half a step toward 0
    z = (shift - step) / math.sqrt(variance)
    return statistic, min(2.0 * normal_tail(abs(z)), 1.0)


def _rank_sums(nonzero: pl.Series) -> tuple[float, pl.Series]:
    """W+ (the sum of the positive differences' ranks by absolute value, ties sharing their
    average rank) and the size of each group of tied absolute values: one group-by of the
    distinct absolute values, not a rank per difference (a few hundred values, not 180,000)."""
    groups = (
        nonzero.to_frame("d")
        .group_by(absolute=pl.col("d").abs())
        .agg(size=pl.len().cast(pl.Int64), positive=(pl.col("d") > 0).sum().cast(pl.Int64))
        .sort("absolute")
    )
    size = groups["size"]
    average = size.cum_sum() - (size - 1) / 2  # the group's ranks run up to its cumulative size
    return float((average * groups["positive"]).sum()), size
