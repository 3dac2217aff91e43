"""Property tests of TextNorm calibration and its ensembles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from textnorm.rewards import calibration as cal

# multiples of 1/32: shifts and differences stay exact, so min-max spans never round to zero
finite = st.integers(-640, 640).map(lambda i: i / 32)
rewards = st.integers(1, 8).flatmap(
    lambda k: st.tuples(arrays(float, (3,), elements=finite), arrays(float, (3, k), elements=finite))
)
calibrators = st.sampled_from(
    [
        lambda r, c: cal.textnorm(r, c, temperature=0.7),
        lambda r, c: cal.textnorm(r, c, temperature=3.0),
        lambda r, c: cal.textnorm_minmax(r, c, scale=5.0),
    ]
)


@settings(max_examples=200, deadline=None)
@given(rewards, arrays(float, (3,), elements=finite), calibrators)
def test_invariant_to_image_only_shift(rc, shift, f):
    r, c = rc
    assert np.allclose(f(r + shift, c + shift[:, None]), f(r, c), atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(rewards, st.randoms(use_true_random=False), calibrators)
def test_invariant_to_order_of_contrasts(rc, rnd, f):
    r, c = rc
    perm = list(range(c.shape[1]))
    rnd.shuffle(perm)
    assert np.allclose(f(r, c[:, perm]), f(r, c), atol=1e-12)


@given(finite, st.integers(1, 40), calibrators)
def test_equal_rewards_give_uniform(value, k, f):
    p = f(np.array([value]), np.full((1, k), value))
    assert p[0] == pytest.approx(1 / (1 + k))


@settings(max_examples=200, deadline=None)
@given(rewards, st.floats(0.01, 10))
def test_monotone_in_prompt_reward(rc, delta):
    r, c = rc
    lo, hi = cal.textnorm(r, c), cal.textnorm(r + delta, c)
    assert np.all(hi >= lo - 1e-12)
    assert np.all(cal.textnorm_minmax(r + delta, c, 3.0) >= cal.textnorm_minmax(r, c, 3.0) - 1e-12)


@settings(max_examples=100, deadline=None)
@given(rewards, st.floats(0.1, 10))
def test_minmax_invariant_to_positive_rescaling(rc, a):
    r, c = rc
    assert np.allclose(cal.textnorm_minmax(a * r, a * c, 2.0), cal.textnorm_minmax(r, c, 2.0), atol=1e-9)


def test_known_values():
    p = cal.textnorm(np.array([1.0]), np.array([[0.0, 0.0]]))
    assert p[0] == pytest.approx(np.e / (np.e + 2))
    assert cal.textnorm_minmax(np.array([2.0]), np.array([[0.0, 1.0]]), 1.0)[0] == pytest.approx(
        np.e / (np.e + 1 + np.exp(0.5))
    )
    probs = np.array([[0.2, 0.9], [0.4, 0.5]])
    assert np.allclose(cal.mean_ensemble(probs), [0.3, 0.7])
    assert np.allclose(cal.ur_ensemble(probs, 2.0), [0.3 - 2 * 0.01, 0.7 - 2 * 0.04])


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least one contrastive"):
        cal.textnorm(np.zeros(2), np.zeros((2, 0)))
    with pytest.raises(ValueError, match="shape"):
        cal.textnorm(np.zeros(2), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="temperature"):
        cal.textnorm(np.zeros(1), np.zeros((1, 1)), temperature=0)
    with pytest.raises(ValueError, match="lambda"):
        cal.ur_ensemble(np.zeros((2, 2)), -1)


def test_contrast_term_is_what_textnorm_adds_to_the_scaled_reward():
    rng = np.random.default_rng(0)
    r, c = rng.normal(size=6), rng.normal(size=(6, 3))
    T = 0.7
    # log-odds of TextNorm = r / T + contrast term; log p = log-odds - log(1 + odds) <= log-odds
    np.testing.assert_allclose(cal.contrast_term(c, T), -np.log(np.exp(c / T).sum(-1)))
    lp = np.log(cal.textnorm(r, c, T))
    assert np.all(lp <= r / T + cal.contrast_term(c, T) + 1e-12)  # dropping exp(r/T) only raises it
    with pytest.raises(ValueError):
        cal.contrast_term(np.zeros((2, 0)))
