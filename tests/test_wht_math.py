"""The integer WHT layer against the seed's float definition, Hadamard matrices and Walsh ordering."""
import math

import numpy as np
import pytest
from scipy.linalg import hadamard

from engine.ops import wht


@pytest.mark.parametrize("n", [2, 8, 64, 1024])
def test_fwht_matches_hadamard_matrix(n):
    x = np.random.default_rng(n).integers(-128, 128, (5, n))
    np.testing.assert_array_equal(wht.fwht(x), x @ hadamard(n).T)


@pytest.mark.parametrize("n", [2, 4, 16, 128])
def test_walsh_order_is_sequency(n):
    rows = hadamard(n)[wht.walsh_to_natural(n)]
    changes = [(np.diff(r) != 0).sum() for r in rows]
    assert changes == list(range(n))


def float_layer(x, t_float, n, cout, mode, scale):
    """Seed 000 in floats: orthonormal WHT, threshold all but DC, inverse, crop."""
    h = hadamard(n) / math.sqrt(n)
    xp = np.zeros((len(x), n))
    xp[:, : x.shape[1]] = x * scale
    z = xp @ h.T
    r = np.maximum(np.abs(z) - t_float, 0)
    y = np.sign(z) * r * (np.tanh(np.abs(z)) if mode == wht.SMOOTH else 1)
    y[:, 0] = z[:, 0]
    return (y @ h)[:, :cout] / scale


@pytest.mark.parametrize("mode", [wht.SOFT, wht.SMOOTH])
def test_integer_layer_tracks_float_semantics(mode):
    rng = np.random.default_rng(mode)
    n, cout, scale = 64, 40, 0.02
    x = rng.integers(-128, 128, (200, 50))
    t_float = rng.uniform(0, 0.5, n)
    t_int = np.rint(t_float * math.sqrt(n) / scale).astype(np.int64)
    t_int[0] = 0
    g, table = wht.smooth_table(scale / math.sqrt(n))
    z = wht.threshold(wht.fwht(np.pad(x, ((0, 0), (0, n - 50)))), t_int, mode, g, table)
    got = wht.rshift_round(wht.fwht(z), 6)[:, :cout]
    want = float_layer(x, t_float, n, cout, mode, scale)
    err = np.abs(got - want)
    # rounding of T and of the final shift stay within a couple of LSB; smooth adds the table bound
    limit = 2.5 if mode == wht.SOFT else 2.5 + wht.smooth_error_bound(scale / math.sqrt(n), g, table) * np.abs(want).max() * 2
    assert err.max() <= limit, (err.max(), limit)


@pytest.mark.parametrize("scale_z", [1e-4, 3e-3, 0.05, 1.0])
def test_smooth_table_error_bound_holds(scale_z):
    g, table = wht.smooth_table(scale_z)
    bound = wht.smooth_error_bound(scale_z, g, table)
    assert bound < 0.03  # bucket width (<= 12/256 of tanh's range) dominates; three powers of two per entry
    z = np.arange(-(256 << g) - 50, (256 << g) + 50, max(1, (1 << g) // 7), dtype=np.int64)
    got = wht.threshold(z[:, None].repeat(2, 1), np.array([0, 0]), wht.SMOOTH, g, table)[:, 1]
    want = np.tanh(np.abs(z) * scale_z) * np.abs(z) * np.sign(z)
    assert np.all(np.abs(got - want) <= bound * np.abs(z) + 3), np.abs(got - want).max()


def test_naf_digits_and_scale_cost():
    """The fewest signed powers of two summing to each value (brute force: the non-adjacent form), and a
    scaled layer's cost: a multiply per pixel only for factors needing more than TABLE_TERMS of them."""
    def naf(x: int) -> int:
        x, count = abs(x), 0
        while x:
            if x & 1:
                x, count = x - (2 - (x & 3)), count + 1
            x >>= 1
        return count
    r = np.arange(-5000, 5000)
    assert wht.naf_digits(r).tolist() == [naf(int(x)) for x in r]
    from engine.ops import NodeView
    cscale = np.array([0, 1, -4, 3, 7, 11, 85, -(2**23)])  # digits 0 1 1 2 2 3 4 1
    a = dict(n=8, cout=8, mode=wht.SOFT, residual=0, scaled=1)
    cost = wht.wht_cost(NodeView(a, {"cscale": cscale}, [(2, 3, 8)], (2, 3, 8), "int8"))
    plain = wht.wht_cost(NodeView(dict(a, scaled=0), {}, [(2, 3, 8)], (2, 3, 8), "int8"))
    assert cost.multiplies == 6 * 1  # only 85
    assert cost.adds - plain.adds == 6 * (8 + 1 + 1 + 2)  # rounding, then 3, 7 and 11's extra terms
