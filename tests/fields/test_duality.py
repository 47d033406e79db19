"""Forward-only interaction fields and conditional flow matching are one construction (arXiv 2602.02261).

A Gaussian-path field (``physfield.fields.GaussianPathField``: the strong field's family, strings
``N(x; c(z), sigma(z)^2)`` between paired charges) followed in ``t = z / L`` has the velocity

    v(t, x) = dx/dt = L E_x / E_z = sum_ij w_ij u_ij(t, x) / sum_ij w_ij,
    w_ij = pi_ij N(x; mu_ij(t), sigma_t^2 I),   u_ij = (b_j - a_i) + (sigma_t' / sigma_t)(x - mu_ij(t)),

with ``mu_ij(t) = (1 - t) a_i + t b_j`` and ``sigma_t = sigma(L t)``: the marginal vector field of
conditional flow matching on the same Gaussian path and coupling ``pi``. The tests compare
physfield's field, through that change of variables (``t = z/L``, ``v = L u_x / u_z`` from the unit
direction ``u`` that the training cache stores), with torchcfm's own path: its
``SchrodingerBridgeConditionalFlowMatcher`` (``sigma_t = sigma sqrt(t (1 - t))``, which vanishes at
both ends like a proper interaction field) supplies ``mu_t``, ``sigma_t`` and the conditional
flows ``u_ij``, and the marginal is their posterior-weighted mean. The strong field is the same
construction with ``sigma_t = sigma0 sin(pi t)`` (``d = L/2``), a path torchcfm does not ship.
"""

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchcfm.conditional_flow_matching import SchrodingerBridgeConditionalFlowMatcher

import physfield as pf


class BrownianBridgePath(pf.GaussianPathField):
    """The Gaussian path of SB-CFM: ``sigma(z) = sigma0 sqrt(t (1 - t))``, ``t = z / L``."""

    def __init__(self, L=6.0, sigma0=1.0):
        super().__init__(L)
        self.sigma0 = sigma0

    def profile(self, z):
        t = z / self.L
        root = np.sqrt(t * (1 - t))
        return self.sigma0 * root, self.sigma0 * (1 - 2 * t) / (2 * root * self.L)


def field_velocity(field, t, x, A, B, plan):
    """physfield's side: the unit direction at ``(z, x) = (L t, x)``, as ``dx/dt = L u_x / u_z``."""
    points = np.column_stack([field.L * t, x])
    u, _ = field.direction(points, A, B, plan=plan, backend="numpy")
    return field.L * u[:, 1:] / u[:, :1]


def cfm_marginal(matcher, t, x, A, B, pi):
    """torchcfm's side: the posterior-weighted mean of its conditional flows over every pair ``(i, j)``."""
    n = len(t)
    I, J = np.nonzero(pi)
    tt = torch.from_numpy(np.repeat(t, len(I)))
    x0 = torch.from_numpy(np.tile(A[I], (n, 1)))
    x1 = torch.from_numpy(np.tile(B[J], (n, 1)))
    xt = torch.from_numpy(np.repeat(x, len(I), axis=0))
    mu = matcher.compute_mu_t(x0, x1, tt[:, None])
    sigma = matcher.compute_sigma_t(tt)[:, None]
    u = matcher.compute_conditional_flow(x0, x1, tt, xt)
    logw = np.log(np.tile(pi[I, J], n)) - (((xt - mu) / sigma) ** 2).sum(dim=1).numpy() / 2
    logw = logw.reshape(n, len(I))
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    return np.einsum("nk,nkd->nd", w / w.sum(axis=1, keepdims=True), u.numpy().reshape(n, len(I), -1))


@st.composite
def configurations(draw):
    D = draw(st.integers(1, 4))
    N = draw(st.integers(1, 5))
    M = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    L = draw(st.sampled_from([1.0, 6.0, 40.0]))
    sigma0 = draw(st.sampled_from([0.3, 1.0, 2.0]))
    rng = np.random.default_rng(seed)
    A, B = rng.normal(size=(N, D)), rng.normal(size=(M, D)) + 2
    pi = rng.random((N, M)) * (rng.random((N, M)) < 0.7)
    pi[0, 0] += 0.1  # at least one pair
    pi /= pi.sum()
    n = 16
    t = rng.uniform(0.05, 0.95, n)
    # points on and around the strings: a pair's path point plus up to three of its widths
    k = rng.integers(0, N * M, n)
    c = (1 - t)[:, None] * A[k // M] + t[:, None] * B[k % M]
    x = c + sigma0 * np.sqrt(t * (1 - t))[:, None] * rng.normal(size=(n, D)) * rng.uniform(0, 3, (n, 1))
    return L, sigma0, A, B, pi, t, x


@given(cfg=configurations())
def test_field_velocity_is_the_flow_matching_marginal_field(cfg):
    L, sigma0, A, B, pi, t, x = cfg
    matcher = SchrodingerBridgeConditionalFlowMatcher(sigma=sigma0)
    ours = field_velocity(BrownianBridgePath(L, sigma0), t, x, A, B, pi)
    theirs = cfm_marginal(matcher, t, x, A, B, pi)
    # torchcfm adds 1e-8 to 2 t (1 - t) in sigma_t'/sigma_t: a relative 1e-8 / 0.095 at t = 0.05
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6 * (1 + np.abs(theirs).max()))


def test_one_pair_is_torchcfms_conditional_target():
    """With one pair the field's velocity is torchcfm's regression target ``u_t(x | x0, x1)`` at
    the points ``x_t`` torchcfm itself draws (``sample_location_and_conditional_flow``)."""
    torch.manual_seed(0)
    matcher = SchrodingerBridgeConditionalFlowMatcher(sigma=0.7)
    x0 = torch.randn(1, 3, dtype=torch.float64).repeat(64, 1)
    x1 = (torch.randn(1, 3, dtype=torch.float64) + 3).repeat(64, 1)
    t = torch.rand(64, dtype=torch.float64) * 0.9 + 0.05
    t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1, t)
    field = BrownianBridgePath(L=6.0, sigma0=0.7)
    ours = field_velocity(field, t.numpy(), xt.numpy(), x0[:1].numpy(), x1[:1].numpy(), "paired")
    np.testing.assert_allclose(ours, ut.numpy(), rtol=1e-6, atol=1e-6)


def test_a_different_path_does_not_agree():
    """The comparison can fail: the strong field (sine bridge) is not SB-CFM's path."""
    rng = np.random.default_rng(3)
    A, B = rng.normal(size=(3, 2)), rng.normal(size=(3, 2)) + 2
    pi = np.eye(3) / 3
    t = rng.uniform(0.1, 0.9, 32)
    x = (1 - t)[:, None] * A[0] + t[:, None] * B[0] + 0.3 * rng.normal(size=(32, 2))
    ours = field_velocity(pf.StrongField(L=6.0, sigma0=1.0), t, x, A, B, pi)
    theirs = cfm_marginal(SchrodingerBridgeConditionalFlowMatcher(sigma=1.0), t, x, A, B, pi)
    assert np.abs(ours - theirs).max() > 0.1
