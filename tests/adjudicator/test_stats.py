"""Tests for services.adjudicator.stats against textbook values worked by hand (never the
same library call as the code, which would only check scipy against itself)."""

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.adjudicator.stats import (
    CLUSTER_EXACT_METHOD,
    CLUSTER_LOGIT_METHOD,
    PairedTest,
    ProportionCI,
    clopper_pearson,
    clustered_proportion_ci,
    cohen_kappa,
    paired_wilcoxon,
    proportion,
)

Z95 = 1.959963984540054


def wald_logit(p: float, var: float, z: float = Z95) -> tuple[float, float]:
    """Reference logit interval written out by hand, independent of the module."""
    centre = math.log(p / (1 - p))
    half = z * math.sqrt(var) / (p * (1 - p))
    return 1 / (1 + math.exp(-(centre - half))), 1 / (1 + math.exp(-(centre + half)))


# --- proportion -------------------------------------------------------------------------


def test_proportion() -> None:
    assert proportion(3, 4) == 0.75
    assert proportion(0, 5) == 0.0
    assert proportion(0, 0) is None


@pytest.mark.parametrize(("k", "n"), [(-1, 3), (4, 3), (0, -1)])
def test_proportion_rejects_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError):
        proportion(k, n)


# --- Clopper-Pearson --------------------------------------------------------------------


def test_clopper_pearson_textbook_12_of_20() -> None:
    ci = clopper_pearson(12, 20)
    assert ci is not None
    assert ci == pytest.approx((0.3605, 0.8088), abs=1e-4)


def test_clopper_pearson_zero_successes() -> None:
    # Closed form when k == 0: upper = 1 - (alpha / 2) ** (1 / n).
    assert clopper_pearson(0, 10) == pytest.approx((0.0, 1 - 0.025 ** (1 / 10)), abs=1e-12)
    assert clopper_pearson(0, 10) == pytest.approx((0.0, 0.3085), abs=1e-4)


def test_clopper_pearson_all_successes() -> None:
    lower, upper = clopper_pearson(10, 10)  # type: ignore[misc]
    assert lower == pytest.approx(0.025 ** (1 / 10), abs=1e-12)
    assert lower == pytest.approx(0.6915, abs=1e-4)
    assert upper == 1.0


def test_clopper_pearson_level_changes_width() -> None:
    ci90 = clopper_pearson(12, 20, level=0.90)
    ci99 = clopper_pearson(12, 20, level=0.99)
    assert ci90 is not None and ci99 is not None
    assert ci99[0] < ci90[0] < 0.6 < ci90[1] < ci99[1]


def test_clopper_pearson_empty_and_invalid() -> None:
    assert clopper_pearson(0, 0) is None
    with pytest.raises(ValueError):
        clopper_pearson(5, 3)
    with pytest.raises(ValueError):
        clopper_pearson(1, 3, level=1.0)


def test_clopper_pearson_returns_plain_floats() -> None:
    ci = clopper_pearson(3, 7)
    assert ci is not None
    assert all(type(v) is float for v in ci)


# --- Cohen's kappa ----------------------------------------------------------------------


def test_kappa_worked_example() -> None:
    # 50 items: both yes 20, A yes / B no 5, A no / B yes 10, both no 15.
    # p_o = 35/50 = 0.70; A says yes 25/50, B 30/50; p_e = .5*.6 + .5*.4 = 0.50;
    # kappa = (0.70 - 0.50) / (1 - 0.50) = 0.40.
    a = [True] * 20 + [True] * 5 + [False] * 10 + [False] * 15
    b = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4, abs=1e-12)


def test_kappa_perfect_agreement() -> None:
    a = [True, False, True, True, False]
    assert cohen_kappa(a, list(a)) == 1.0


def test_kappa_chance_level_is_zero() -> None:
    # p_o = 0.5 and p_e = 0.5.
    assert cohen_kappa([True, True, False, False], [True, False, True, False]) == 0.0


def test_kappa_perfect_disagreement() -> None:
    assert cohen_kappa([True, False], [False, True]) == -1.0


def test_kappa_one_constant_rater_is_zero() -> None:
    # A always says yes: agreement equals B's yes-rate, which is exactly chance.
    assert cohen_kappa([True] * 4, [True, True, True, False]) == 0.0


def test_kappa_both_raters_constant_and_equal_is_one() -> None:
    assert cohen_kappa([False] * 6, [False] * 6) == 1.0
    assert cohen_kappa([True] * 3, [True] * 3) == 1.0


def test_kappa_empty_and_mismatched() -> None:
    assert cohen_kappa([], []) is None
    with pytest.raises(ValueError):
        cohen_kappa([True], [True, False])


# --- clustered proportion ---------------------------------------------------------------


def test_clustered_hand_computed() -> None:
    # y = (1, 2, 0), m = (2, 2, 1): M = 5, p = 0.6,
    # residuals y - p*m = (-0.2, 0.8, -0.6), sum of squares 1.04,
    # var = 3/2 * 1.04 / 25 = 0.0624, binomial var = 0.24 / 5 = 0.048, deff = 1.3.
    ci = clustered_proportion_ci([1, 2, 0], [2, 2, 1])
    assert ci is not None
    assert ci.estimate == pytest.approx(0.6)
    assert ci.design_effect == pytest.approx(1.3)
    assert ci.method == CLUSTER_LOGIT_METHOD
    assert (ci.lower, ci.upper) == pytest.approx(wald_logit(0.6, 0.0624), rel=1e-9)


def test_clustered_singletons_match_binomial_logit_interval() -> None:
    n, k = 200, 130
    ci = clustered_proportion_ci([1] * k + [0] * (n - k), [1] * n)
    assert ci is not None
    p = k / n
    assert ci.estimate == p
    # Exactly the binomial logit interval with the n/(n-1) cluster-robust factor ...
    assert (ci.lower, ci.upper) == pytest.approx(wald_logit(p, p * (1 - p) / (n - 1)), rel=1e-9)
    assert ci.design_effect == pytest.approx(n / (n - 1))
    # ... and therefore close to the textbook p(1-p)/n logit interval and to Clopper-Pearson.
    assert (ci.lower, ci.upper) == pytest.approx(wald_logit(p, p * (1 - p) / n), abs=2e-4)
    assert (ci.lower, ci.upper) == pytest.approx(clopper_pearson(k, n), abs=5e-3)


def test_clustered_wider_than_binomial_when_patients_concordant() -> None:
    # 20 patients with 3 tracts each; within a patient the tracts all close or all fail.
    successes = [3] * 12 + [0] * 8
    sizes = [3] * 20
    ci = clustered_proportion_ci(successes, sizes)
    assert ci is not None
    p = 36 / 60
    naive = wald_logit(p, p * (1 - p) / 60)
    exact = clopper_pearson(36, 60)
    assert exact is not None
    assert ci.upper - ci.lower > naive[1] - naive[0]
    assert ci.upper - ci.lower > exact[1] - exact[0]
    assert ci.lower < naive[0] and ci.upper > naive[1]
    # Perfect within-patient correlation: deff = m * n/(n-1) = 3 * 20/19.
    assert ci.design_effect == pytest.approx(3 * 20 / 19)


def test_clustered_interval_inside_unit_interval() -> None:
    ci = clustered_proportion_ci([1, 0, 0, 0, 0], [3, 2, 4, 1, 2])
    assert ci is not None
    assert 0.0 < ci.lower < ci.estimate < ci.upper < 1.0


@pytest.mark.parametrize(("successes", "k"), [([0, 0, 0], 0), ([2, 1, 3], 6)])
def test_clustered_boundary_falls_back_to_clopper_pearson(successes: list[int], k: int) -> None:
    sizes = [2, 1, 3]
    ci = clustered_proportion_ci(successes, sizes)
    assert ci is not None
    assert ci.method == CLUSTER_EXACT_METHOD
    assert ci.design_effect == 1.0
    assert ci.estimate == k / 6
    assert (ci.lower, ci.upper) == clopper_pearson(k, 6)


def test_clustered_ignores_patients_without_tracts() -> None:
    assert clustered_proportion_ci([1, 0, 2, 0], [2, 0, 2, 0]) == clustered_proportion_ci(
        [1, 2], [2, 2]
    )


def test_clustered_needs_two_patients() -> None:
    assert clustered_proportion_ci([], []) is None
    assert clustered_proportion_ci([0, 0], [0, 0]) is None
    assert clustered_proportion_ci([2], [3]) is None
    assert clustered_proportion_ci([2, 0], [3, 0]) is None


@pytest.mark.parametrize(
    ("successes", "sizes"),
    [
        ([1], [1, 1]),
        ([3, 0], [2, 1]),
        ([-1, 0], [1, 1]),
        ([0, 0], [-1, 1]),
        ([None, 0], [1, 1]),  # a missing count
        ([1, 0], [1, None]),
    ],
)
def test_clustered_rejects_bad_input(successes: list[int], sizes: list[int]) -> None:
    with pytest.raises(ValueError):
        clustered_proportion_ci(successes, sizes)


def test_clustered_is_json_serialisable() -> None:
    ci = clustered_proportion_ci([1, 2, 0], [2, 2, 1])
    assert isinstance(ci, ProportionCI)
    assert json.loads(json.dumps(dataclasses.asdict(ci)))["design_effect"] == pytest.approx(1.3)


clusters = st.lists(
    st.integers(min_value=0, max_value=6).flatmap(
        lambda m: st.tuples(st.integers(min_value=0, max_value=m), st.just(m))
    ),
    max_size=40,
)


@given(clusters, st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_clustered_interval_contains_estimate_property(
    data: list[tuple[int, int]], level: float
) -> None:
    successes = [y for y, _ in data]
    sizes = [m for _, m in data]
    ci = clustered_proportion_ci(successes, sizes, level)
    if sum(1 for m in sizes if m > 0) < 2:
        assert ci is None
        return
    assert ci is not None
    assert 0.0 <= ci.lower <= ci.estimate <= ci.upper <= 1.0
    assert ci.estimate == sum(successes) / sum(sizes)
    assert ci.design_effect >= 1.0


# --- Wilcoxon signed-rank ---------------------------------------------------------------

BEFORE = [125.0, 115.0, 130.0, 140.0, 140.0, 115.0, 140.0, 125.0, 140.0, 135.0]
AFTER = [110.0, 122.0, 125.0, 120.0, 140.0, 124.0, 123.0, 137.0, 135.0, 145.0]


def test_wilcoxon_exact_textbook_example() -> None:
    """Hollander & Wolfe's Hamilton depression scale data (Nonparametric Statistical Methods;
    before and after a tranquilliser). Differences after - before ranked by size: the two
    positive ones have ranks 2 and 3, so T+ = 5 and T- = 40; the exact two-sided p-value is
    2 * P(T+ <= 5) = 2 * 10 / 2**9 (ten of the 512 sign patterns have T+ <= 5)."""
    before = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
    after = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]
    res = paired_wilcoxon(before, after)
    assert res is not None
    assert res.statistic == 5.0  # min(T+, T-)
    assert res.p_value == pytest.approx(20 / 512, rel=1e-12)
    assert res.n_pairs == res.n_nonzero == 9
    assert "exact" in res.method


def test_wilcoxon_ties_and_zeros_use_the_normal_approximation() -> None:
    """The textbook example of Wikipedia's "Wilcoxon signed-rank test" (10 pairs, one zero
    difference, one tie), worked by hand. Non-zero differences after - before: -15, 7, -5,
    -20, 9, -17, 12, -5, 10 (n = 9); ranks of |d|: 5, 5 -> 1.5 each, 7 -> 3, 9 -> 4, 10 -> 5,
    12 -> 6, 15 -> 7, 17 -> 8, 20 -> 9. W+ = 3 + 4 + 6 + 5 = 18, W- = 27. Under H0 the mean
    is n(n+1)/4 = 22.5; the variance n(n+1)(2n+1)/24 = 71.25 less the tie term
    (2**3 - 2)/48 = 0.125 is 71.125. With the continuity correction
    z = (|18 - 22.5| - 0.5) / sqrt(71.125) and p = 2 * (1 - Phi(z)) = erfc(z / sqrt(2))
    (0.6353, as R's wilcox.test(paired = TRUE) prints)."""
    res = paired_wilcoxon(BEFORE, AFTER)
    assert res is not None
    assert res.statistic == 18.0
    z = (abs(18 - 22.5) - 0.5) / math.sqrt(71.125)
    assert res.p_value == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-12)
    assert res.p_value == pytest.approx(0.6353, abs=1e-4)
    assert res.n_pairs == 10 and res.n_nonzero == 9  # one zero difference dropped
    assert "normal approximation" in res.method


def test_wilcoxon_summary_values() -> None:
    res = paired_wilcoxon([1.0, 2.0, 3.0, 4.0], [2.0, 2.5, 5.0, 3.0])
    assert res is not None
    assert res.median_before == 2.5
    assert res.median_after == 2.75
    # Differences after - before: 1, 0.5, 2, -1 -> median 0.75 (not 2.75 - 2.5).
    assert res.median_difference == 0.75


def test_wilcoxon_is_json_serialisable() -> None:
    res = paired_wilcoxon(BEFORE, AFTER)
    assert isinstance(res, PairedTest)
    as_dict = dataclasses.asdict(res)
    assert all(type(v) in (int, float, str) for v in as_dict.values())
    assert json.loads(json.dumps(as_dict)) == as_dict


def test_wilcoxon_guards() -> None:
    assert paired_wilcoxon([], []) is None
    assert paired_wilcoxon([1.0, 2.0], [1.0, 2.0]) is None  # no non-zero difference
    single = paired_wilcoxon([1.0, 2.0], [1.0, 3.0])
    assert single is not None and single.p_value == 1.0
    with pytest.raises(ValueError):
        paired_wilcoxon([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        paired_wilcoxon([1.0, float("nan")], [1.0, 2.0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=1, max_size=120))
def test_wilcoxon_agrees_with_scipy_on_any_sample(pairs: list[tuple[int, int]]) -> None:
    """The signed-rank distribution is computed here (scipy.stats takes seconds to import);
    scipy's wilcoxon, with the same options, is the oracle: exact below 50 untied non-zero
    differences, the tie- and continuity-corrected normal approximation otherwise."""
    from scipy import stats

    before, after = [float(b) for b, _ in pairs], [float(a) for _, a in pairs]
    ours = paired_wilcoxon(before, after)
    d = [a - b for b, a in zip(before, after, strict=True)]
    nonzero = [x for x in d if x]
    if not nonzero:
        assert ours is None
        return
    exact = (
        len(nonzero) < 50
        and len(nonzero) == len(d)
        and len({abs(x) for x in nonzero}) == len(nonzero)
    )
    theirs = stats.wilcoxon(
        d, zero_method="wilcox", correction=True, method="exact" if exact else "asymptotic"
    )
    assert ours is not None
    assert ours.statistic == pytest.approx(float(theirs.statistic))
    assert ours.p_value == pytest.approx(float(theirs.pvalue), rel=1e-9, abs=1e-12)
