"""Layer checks: FWHT vs scipy, WHT layer vs its matrix definition, gradients,
HadamardDepthwise vs a direct loop, StructuredConv2d decomposition."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from training.layers import (WHT, HadamardDepthwise, StructuredConv2d, composite_kernel,
                             fwht, hadamard_matrix, next_pow2, structural_loss,
                             walsh_permutation)


def sequency(row):
    return int((np.diff(np.sign(row)) != 0).sum())


@pytest.mark.parametrize("n", [1, 2, 4, 8, 32, 256])
def test_fwht_matches_scipy_hadamard(n):
    h = scipy.linalg.hadamard(n).astype(np.float64)
    x = torch.randn(3, n, 2, 5, dtype=torch.float64)
    want = np.einsum("ij,bjhw->bihw", h, x.numpy())
    np.testing.assert_allclose(fwht(x, 1).numpy(), want, atol=1e-10)
    # along the last dim too
    xl = torch.randn(4, n, dtype=torch.float64)
    np.testing.assert_allclose(fwht(xl, -1).numpy(), xl.numpy() @ h.T, atol=1e-10)


def test_fwht_rejects_non_power_of_two():
    with pytest.raises(ValueError):
        fwht(torch.zeros(2, 6), 1)


@pytest.mark.parametrize("n", [2, 8, 64])
def test_orderings_against_scipy(n):
    h = scipy.linalg.hadamard(n)
    np.testing.assert_array_equal(hadamard_matrix(n, "hadamard").numpy(), h)
    w = hadamard_matrix(n, "walsh").numpy()
    # Walsh (sequency) order: row s has exactly s sign changes, and it is a
    # row permutation of scipy's Hadamard matrix
    assert [sequency(r) for r in w] == list(range(n))
    np.testing.assert_array_equal(w, h[walsh_permutation(n)])
    by_seq = sorted(range(n), key=lambda i: sequency(h[i]))
    assert walsh_permutation(n) == by_seq


def wht_reference(x, t, n, cout, mode, ordering, residual, v=None):
    """Independent definition from scipy's matrix, ordering by counted sequency."""
    h = scipy.linalg.hadamard(n).astype(np.float64)
    if ordering == "walsh":
        h = h[sorted(range(n), key=lambda i: sequency(h[i]))]
    b, c = x.shape[:2]
    xp = np.zeros((b, n) + x.shape[2:])
    xp[:, :c] = x
    z = np.einsum("ij,bj...->bi...", h, xp) / math.sqrt(n)
    if v is not None:
        z = z * v.reshape((1, n) + (1,) * (x.ndim - 2))
    tt = np.maximum(t, 0).reshape((1, n) + (1,) * (x.ndim - 2))
    f = np.sign(z) if mode == "soft" else np.tanh(z)
    zt = f * np.maximum(np.abs(z) - tt, 0)
    zt[:, 0] = z[:, 0]
    y = np.einsum("ij,bj...->bi...", h.T, zt)[:, :cout] / math.sqrt(n)
    return y + x if residual else y


@pytest.mark.parametrize("cin,cout", [(5, 5), (3, 7), (12, 5), (16, 16), (96, 40), (1, 3)])
@pytest.mark.parametrize("mode", ["soft", "smooth"])
@pytest.mark.parametrize("ordering", ["hadamard", "walsh"])
@pytest.mark.parametrize("scale", [False, True])
def test_wht_layer_matches_definition(cin, cout, mode, ordering, scale):
    torch.manual_seed(cin * 31 + cout)
    residual = cin == cout
    m = WHT(cin, cout, mode, ordering, residual=residual, scale=scale).double()
    assert m.n == next_pow2(max(cin, cout)) and m.T.shape == (m.n,)
    with torch.no_grad():
        m.T.uniform_(-0.1, 0.4)          # some negative: forward clamps at 0
        if scale:
            m.V.uniform_(-2, 2)
    x = torch.randn(2, cin, 3, 2, dtype=torch.float64)
    want = wht_reference(x.numpy(), m.T.detach().numpy(), m.n, cout, mode, ordering, residual,
                         m.V.detach().numpy() if scale else None)
    np.testing.assert_allclose(m(x).detach().numpy(), want, atol=1e-10)
    np.testing.assert_allclose(m.reference_forward(x).detach().numpy(), want, atol=1e-10)


def test_wht_zero_threshold_soft_is_pad_and_crop():
    m = WHT(6, 6, "soft", init_threshold=0.0).double()
    x = torch.randn(2, 6, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(m(x), x)       # orthonormal, T = 0: identity


def test_wht_scale_is_a_dyadic_convolution():
    """With T = 0 (soft), the scaled layer is y[i] = sum_j x[j] g[i xor j], g = H V / n: learned channel mixing."""
    n = 16
    m = WHT(n, n, "soft", init_threshold=0.0, scale=True).double()
    with torch.no_grad():
        m.V.uniform_(-1, 1)
    g = scipy.linalg.hadamard(n) @ m.V.detach().numpy() / n
    x = torch.randn(3, n, 1, 1, dtype=torch.float64)
    want = np.stack([[x[b, :, 0, 0].numpy() @ g[i ^ np.arange(n)] for i in range(n)] for b in range(3)])
    np.testing.assert_allclose(m(x)[:, :, 0, 0].detach().numpy(), want, atol=1e-12)


def test_wht_clamp_and_attributes():
    m = WHT(20, 40, "smooth", "walsh", init_threshold=0.5)
    assert (m.n, m.ordering, m.mode, m.residual) == (64, "walsh", "smooth", False)
    with torch.no_grad():
        m.T[3] = -1.0
    m.clamp_()
    assert float(m.T.detach().min()) >= 0
    with pytest.raises(ValueError):
        WHT(4, 8, residual=True)


@pytest.mark.parametrize("mode", ["soft", "smooth"])
@pytest.mark.parametrize("ordering", ["hadamard", "walsh"])
def test_wht_gradcheck(mode, ordering):
    torch.manual_seed(0)
    m = WHT(3, 5, mode, ordering).double()
    with torch.no_grad():
        m.T.uniform_(0.05, 0.3)
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    t = m.T

    def f(x, t):
        with torch.no_grad():
            m.T.copy_(t)
        return m(x)

    assert torch.autograd.gradcheck(lambda xx: m(xx), (x,))
    # gradient w.r.t. T through the functional path
    out = m(x).sum()
    (gt,) = torch.autograd.grad(out, [t])
    eps = 1e-6
    num = torch.zeros_like(gt)
    for i in range(m.n):
        with torch.no_grad():
            m.T[i] += eps
            up = m(x).sum().item()
            m.T[i] -= 2 * eps
            dn = m(x).sum().item()
            m.T[i] += eps
        num[i] = (up - dn) / (2 * eps)
    torch.testing.assert_close(gt, num, atol=1e-5, rtol=1e-4)
    assert gt[0] == 0     # DC threshold is unused


def hdw_loop(x, w, b, stride, op):
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ho, wo = (h - 1) // stride + 1, (wd - 1) // stride + 1
    y = np.zeros((n, c, ho, wo))
    for bi, ci, i, j in itertools.product(range(n), range(c), range(ho), range(wo)):
        s = b[ci]
        for u, v in itertools.product(range(3), range(3)):
            a, k = xp[bi, ci, stride * i + u, stride * j + v], w[ci, 0, u, v]
            if op == "min":
                s += 0.5 * (abs(a + k) - abs(a - k))
            else:
                s += np.sign(a) * np.sign(k) * (abs(a) + abs(k))
        y[bi, ci, i, j] = s
    return y


@pytest.mark.parametrize("op", ["min", "ef"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(5, 5), (6, 7)])
def test_hadamard_depthwise_matches_loop(op, stride, hw):
    torch.manual_seed(1)
    m = HadamardDepthwise(3, stride, op).double()
    with torch.no_grad():
        m.bias.normal_()
    assert m.weight.shape == (3, 1, 3, 3) and m.bias.shape == (3,) and m.padding == 1
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    want = hdw_loop(x.numpy(), m.weight.detach().numpy(), m.bias.detach().numpy(), stride, op)
    np.testing.assert_allclose(m(x).detach().numpy(), want, atol=1e-12)
    np.testing.assert_allclose(m.reference_forward(x).detach().numpy(), want, atol=1e-12)


@pytest.mark.parametrize("op", ["min", "ef"])
@pytest.mark.parametrize("stride", [1, 2])
def test_hadamard_depthwise_gradients(op, stride):
    torch.manual_seed(2)
    m = HadamardDepthwise(2, stride, op).double()
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    from training.layers import _HadamardDWFunction
    assert torch.autograd.gradcheck(
        lambda x, w, b: _HadamardDWFunction.apply(x, w, b, stride, op),
        (x, m.weight, m.bias))
    # custom backward == autograd through the plain formulation
    g = torch.randn_like(m(x))
    a = torch.autograd.grad(m(x), [x, m.weight, m.bias], g)
    b = torch.autograd.grad(m.reference_forward(x), [x, m.weight, m.bias], g)
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q)
    assert a[0].abs().sum() > 0 and a[1].abs().sum() > 0   # usable gradient


@pytest.mark.parametrize("cin,cout,cp,kp,stride", [
    (8, 5, 6, 2, 1), (8, 5, 6, 2, 2), (4, 3, 4, 2, 1), (6, 4, 1, 1, 1), (5, 7, 3, 3, 2)])
def test_structured_decompose_equals_composite(cin, cout, cp, kp, stride):
    torch.manual_seed(3)
    m = StructuredConv2d(cin, cout, 3, stride, 1, bias=True, c_prime=cp, k_prime=kp).double()
    with torch.no_grad():
        m.bias.normal_()
    x = torch.randn(2, cin, 9, 8, dtype=torch.float64)
    want = F.conv2d(x, m.composite_weight(), m.bias, stride, 1)
    torch.testing.assert_close(m(x), want)
    d = m.decompose()
    torch.testing.assert_close(d(x), want, atol=1e-12, rtol=1e-12)
    # the decomposition really is sum-pooling then a smaller conv
    pool, conv = d[0], d[1]
    assert pool.kernel == (cin - cp + 1, 3 - kp + 1, 3 - kp + 1)
    assert conv.weight.shape == (cout, cp, kp, kp)


def test_composite_kernel_is_sum_of_masks():
    alpha = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    k = composite_kernel(alpha, 2, 2, 2)
    want = torch.zeros(2, 4, 3, 3, dtype=torch.float64)
    for o, c, i, j in itertools.product(range(2), range(3), range(2), range(2)):
        want[o, c:c + 2, i:i + 2, j:j + 2] += alpha[o, c, i, j]
    torch.testing.assert_close(k, want)


def test_structural_loss_zero_for_structured_and_drives_conv_to_structure():
    torch.manual_seed(4)
    alpha = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    w = composite_kernel(alpha, 3, 2, 2)                  # (4, 5, 3, 3), structured
    assert float(structural_loss(w, 3, 2)) < 1e-10
    assert float(structural_loss(torch.randn(4, 5, 3, 3, dtype=torch.float64), 3, 2)) > 0.3
    m = StructuredConv2d(5, 4, 3, c_prime=3, k_prime=2, mode="regularized").double()
    with torch.no_grad():
        m.weight.copy_(w)
    assert m.structural_loss().item() < 1e-6
    # gradient descent on the loss alone drives an ordinary conv to the structure
    with torch.no_grad():
        m.weight.normal_()
    start = m.structural_loss().item()
    opt = torch.optim.SGD(m.parameters(), lr=2.0)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [250, 350], 0.1)
    for _ in range(400):
        opt.zero_grad()
        m.structural_loss().backward()
        opt.step()
        sched.step()
    end = m.structural_loss().item()
    assert end < 1e-3 < 0.3 < start
    x = torch.randn(1, 5, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        y = m(x)
        assert float((m.decompose()(x) - y).norm() / y.norm()) < 2e-3


def test_expanding_wht_needs_distinct_thresholds():
    """H_n [x; 0] is H_m x repeated n/m times: with equal thresholds an expanding WHT
    layer outputs zeros beyond m = next_pow2(C_in) (the mbv2-wht / mbv2-thesis failure);
    the default U(0, sqrt(C_in/n)) init gives those channels signal from the start."""
    torch.manual_seed(0)
    x = torch.randn(8, 20, 3, 3)
    def channel_std(y):
        return y.transpose(0, 1).reshape(y.shape[1], -1).std(1)

    zero = WHT(20, 100, "soft", init_threshold=0.0)        # n = 128, m = 32
    with torch.no_grad():
        assert zero(x)[:, 32:].abs().max() < 1e-6
        # equal non-zero thresholds: only a near-constant leak from the tiled DC copies
        flat = WHT(20, 100, "soft", init_threshold=0.1)
        s = channel_std(flat(x))
    assert s[32:].max() < 0.01 and s[:20].min() > 0.5
    rnd = WHT(20, 100, "soft")
    assert 0 <= float(rnd.T.detach().min()) and float(rnd.T.detach().max()) <= (20 / 128) ** 0.5
    with torch.no_grad():
        s = channel_std(rnd(x))
    assert s[32:].mean() > 0.03
