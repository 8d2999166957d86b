"""services/adjudicator/special.py against scipy.special as the oracle (scipy is not imported
by the reports, for its import time, but it is the reference implementation)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special as scipy_special

from services.adjudicator.special import (
    beta_cdf,
    beta_quantile,
    expit,
    logit,
    normal_quantile,
    normal_tail,
)

counts = st.integers(min_value=1, max_value=300_000).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=n))
)


@settings(max_examples=300, deadline=None)
@given(counts, st.sampled_from([0.9, 0.95, 0.99]))
def test_the_clopper_pearson_beta_quantiles_agree_with_scipy(
    count: tuple[int, int], level: float
) -> None:
    n, k = count
    alpha = 1 - level
    if k > 0:
        ours = beta_quantile(k, n - k + 1, alpha / 2)
        assert ours == pytest.approx(
            float(scipy_special.betaincinv(k, n - k + 1, alpha / 2)), rel=1e-8
        )
    if k < n:
        ours = beta_quantile(k + 1, n - k, 1 - alpha / 2)
        assert ours == pytest.approx(
            float(scipy_special.betaincinv(k + 1, n - k, 1 - alpha / 2)), rel=1e-8
        )


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=0.05, max_value=5_000),
    st.floats(min_value=0.05, max_value=5_000),
    # subnormal x: scipy's own answer loses digits there (x**a is computed from a subnormal)
    st.floats(min_value=0.0, max_value=1.0, allow_subnormal=False),
)
def test_the_incomplete_beta_agrees_with_scipy(a: float, b: float, x: float) -> None:
    # Below 1e-200 the two underflow differently (scipy may answer 0.0); no interval reads there.
    assert beta_cdf(a, b, x) == pytest.approx(
        float(scipy_special.betainc(a, b, x)), rel=1e-8, abs=1e-200
    )


@given(st.floats(min_value=1e-12, max_value=1 - 1e-12))
def test_the_normal_functions_agree_with_scipy(q: float) -> None:
    assert normal_quantile(q) == pytest.approx(float(scipy_special.ndtri(q)), rel=1e-12, abs=1e-12)
    z = abs(normal_quantile(q))
    assert normal_tail(z) == pytest.approx(float(scipy_special.ndtr(-z)), rel=1e-12)
    assert logit(q) == pytest.approx(float(scipy_special.logit(q)), rel=1e-12, abs=1e-12)
    assert expit(logit(q)) == pytest.approx(q, rel=1e-12)
    assert expit(-800.0) == 0.0 and expit(800.0) == 1.0 and math.isfinite(expit(-1e308))


def test_a_quantile_outside_its_domain_is_refused() -> None:
    with pytest.raises(ValueError, match="a > 0, b > 0"):
        beta_quantile(0, 3, 0.5)
    assert (beta_quantile(2, 3, 0.0), beta_quantile(2, 3, 1.0)) == (0.0, 1.0)
