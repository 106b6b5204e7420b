"""wht: the Walsh-Hadamard layer of seed 000 in integers, add/subtract only (an optional scale aside).

x (int8, C_in channels) -> zero-pad to n = 2^k -> z = H x (unnormalised FWHT) -> optional per-coefficient
scale z = rshift_round(z * cscale, sshift) -> threshold every coefficient but DC -> v = H z', cropped to
C_out (+ x << k if residual) -> clamp(rshift_round(v, k + oshift)).
With orthonormal float semantics y = H T(H x / sqrt n) / sqrt n, oshift = 0 keeps the input's scale s
and oshift = e gives s * 2^e (more range, or with e < 0 more precision); a float threshold T_f maps to
T = round(T_f * sqrt(n) / s) in these units.

Thresholds (per coefficient, T[0] unused):
  soft:   sign(z) * max(|z| - T, 0)
  smooth: sign(z) * tanh(|z| * s_z) * max(|z| - T, 0), s_z = s / sqrt(n). The tanh factor comes from a
          256-entry table indexed by min(|z| >> g, 255); each entry is up to three signed powers of two,
          so f * r = sum(+-(r >> e)): shifts and adds, no multiply. See smooth_table / smooth_error_bound.
Scale (scaled = 1): H diag(cscale) H is a learned dyadic convolution over the channels, the only learned
channel mixing the layer has (without it, H T(H x) is x plus thresholding residue). |cscale| <= 2^sshift
keeps |z| from growing, so the accumulator bound holds as without scale; the converter moves the largest
factor into the output tensor's scale. A cscale costs a multiply per pixel unless it is a sum of at
most TABLE_TERMS signed powers of two (its non-adjacent form's digits), as `convert --mulfree` makes
every one: then shifts and adds, like the table's entries.
Orderings: 'hadamard' (natural) or 'walsh' (sequency). T is stored in the chosen ordering; both orders
give the same natural-order thresholds after the permutation (DC is index 0 in both).
"""
from __future__ import annotations

import math

import numpy as np

from ..quant import rshift_round
from . import ACT, Attr, Blob, Cost, NodeView, Op, register

SOFT, SMOOTH = 0, 1
HADAMARD, WALSH = 0, 1
TABLE_LEN, TABLE_TERMS = 256, 3
# table code c: 0 = no term, +(e+1) = +(r >> e), -(e+1) = -(r >> e)
MAX_LOG2N = 14


def fwht(x: np.ndarray) -> np.ndarray:
    """Unnormalised fast Walsh-Hadamard transform (natural order) over the last axis, int64 exact."""
    y = np.array(x, dtype=np.int64)
    n = y.shape[-1]
    h = 1
    while h < n:
        y = y.reshape(*y.shape[:-1], n // (2 * h), 2, h)
        a, b = y[..., 0, :], y[..., 1, :]
        y = np.stack((a + b, a - b), axis=-2).reshape(*y.shape[:-3], n)
        h *= 2
    return y


def walsh_to_natural(n: int) -> np.ndarray:
    """perm[s] = natural (Hadamard) row index of the Walsh row with sequency s: bitrev(gray(s))."""
    k = n.bit_length() - 1
    s = np.arange(n)
    g = s ^ (s >> 1)
    return np.array([int(format(v, f"0{k}b")[::-1], 2) if k else 0 for v in g], dtype=np.int64)


def natural_order(t: np.ndarray, order: int) -> np.ndarray:
    if order == HADAMARD:
        return t.astype(np.int64)
    nat = np.empty(len(t), dtype=np.int64)
    nat[walsh_to_natural(len(t))] = t
    return nat


def apply_term(r: np.ndarray, code: np.ndarray) -> np.ndarray:
    """One table term: sign(code) * (r >> (|code| - 1)); code 0 adds nothing."""
    code = code.astype(np.int64)
    return np.sign(code) * np.right_shift(r, np.maximum(np.abs(code) - 1, 0))


def threshold(z: np.ndarray, t_nat: np.ndarray, mode: int, g: int, table: np.ndarray) -> np.ndarray:
    """Integer soft/smooth thresholding of FWHT coefficients z (last axis natural order), DC kept."""
    mag = np.abs(z)
    r = np.maximum(mag - t_nat, 0)
    if mode == SMOOTH:
        idx = np.minimum(np.right_shift(mag, g), TABLE_LEN - 1)
        r = sum(apply_term(r, table[j][idx]) for j in range(TABLE_TERMS))
    y = np.sign(z) * r
    y[..., 0] = z[..., 0]
    return y


def max_sshift(n: int) -> int:
    """The largest sshift whose scale step keeps z * cscale + rounding inside int32: (128 n + 1) << sshift."""
    return ((2**31 - 1) // (128 * n + 1)).bit_length() - 1


def wht_shape(a: dict[str, int], ins: list) -> tuple[int, int, int]:
    h, w, c = ins[0]
    n = a["n"]
    if n & (n - 1) or n < 2:
        raise ValueError(f"n={n} must be a power of two >= 2")
    if n < max(c, a["cout"]):
        raise ValueError(f"n={n} must be >= max(cin={c}, cout={a['cout']})")
    if a["residual"] and c != a["cout"]:
        raise ValueError("residual wht needs cin == cout")
    if a["scaled"] and a["sshift"] > max_sshift(n):
        raise ValueError(f"sshift={a['sshift']} lets z * scale (|z| <= 128 n) leave int32")
    if not 0 <= n.bit_length() - 1 + a["oshift"] <= 31:
        raise ValueError(f"oshift={a['oshift']} makes the output shift log2(n) + oshift leave [0, 31]")
    return (h, w, a["cout"])


def wht_reference(v: NodeView, xs: list[np.ndarray]) -> np.ndarray:
    a = v.attrs
    n, cout = a["n"], a["cout"]
    x = xs[0].astype(np.int64)
    xp = np.zeros((*x.shape[:-1], n), dtype=np.int64)
    xp[..., : x.shape[-1]] = x
    t = natural_order(v.blobs["thresh"], a["order"])
    table = v.blobs["table"].reshape(TABLE_TERMS, TABLE_LEN) if a["mode"] == SMOOTH else None
    z = fwht(xp)
    if a["scaled"]:
        z = rshift_round(z * natural_order(v.blobs["cscale"], a["order"]), a["sshift"])
    z = threshold(z, t, a["mode"], a["tshift"], table)
    k = n.bit_length() - 1
    v = fwht(z)[..., :cout] + (x << k if a["residual"] else 0)
    return np.clip(rshift_round(v, k + a["oshift"]), a["act_lo"], a["act_hi"]).astype(np.int8)


def naf_digits(v: np.ndarray) -> np.ndarray:
    """Nonzero digits of each value's non-adjacent form: the fewest signed powers of two that sum to it."""
    x = np.abs(np.asarray(v, np.int64))
    return np.bitwise_count((x >> 1) ^ (x + (x >> 1))).astype(np.int64)


def wht_cost(v: NodeView) -> Cost:
    h, w, _ = v.out_shape
    n, k = v.attrs["n"], v.attrs["n"].bit_length() - 1
    per_coef = 2 + (TABLE_TERMS if v.attrs["mode"] == SMOOTH else 0)
    adds = 2 * n * k + (n - 1) * per_coef + v.attrs["cout"] * (1 + v.attrs["residual"])  # + rounding, residual
    mults = 0
    if v.attrs["scaled"]:
        digits = naf_digits(v.blobs["cscale"])
        shift_add = digits <= TABLE_TERMS
        mults = int(np.count_nonzero(~shift_add))
        adds += n + int(np.maximum(digits[shift_add] - 1, 0).sum())  # the rounding, the terms' sums
    return Cost(h * w * mults, h * w * adds)


def wht_check(v: NodeView) -> None:
    if v.attrs["scaled"] and np.abs(v.blobs["cscale"].astype(np.int64)).max(initial=0) > 1 << v.attrs["sshift"]:
        raise ValueError(f"cscale outside [-2^sshift, 2^sshift] (sshift={v.attrs['sshift']})")


register(Op(
    name="wht", code=3, n_inputs=1,
    attrs=(Attr("cout", 1, 1 << MAX_LOG2N), Attr("n", 2, 1 << MAX_LOG2N, "transform size, power of two"),
           Attr("order", 0, 1, "0 hadamard, 1 walsh"), Attr("mode", 0, 1, "0 soft, 1 smooth"),
           Attr("residual", 0, 1), Attr("tshift", 0, 31, "smooth table index shift g"),
           Attr("oshift", -14, 31, "output scale = input scale * 2^oshift"),
           Attr("scaled", 0, 1, "1: per-coefficient scale before the thresholds"),
           Attr("sshift", 0, 23, "scale step 2^-sshift; |cscale| <= 2^sshift"), *ACT),
    blobs=(Blob("thresh", "int32", doc="n thresholds >= 0 in the chosen ordering; [0] unused", lo=0),
           Blob("table", "int8", doc="smooth only: 3 x 256 shift codes", lo=-32, hi=32),
           Blob("cscale", "int32", doc="scaled only: n factors in the chosen ordering, |cscale| <= 2^sshift",
                lo=-(1 << 23), hi=1 << 23)),
    out_dtypes=("int8",), shape=wht_shape,
    blob_shapes=lambda v: {"thresh": (v.attrs["n"],),
                           "table": (TABLE_TERMS * TABLE_LEN,) if v.attrs["mode"] == SMOOTH else (0,),
                           "cscale": (v.attrs["n"],) if v.attrs["scaled"] else (0,)},
    reference=wht_reference, cost=wht_cost, check=wht_check,
    # |z'| <= 3|z| (three table terms, |cscale| <= 2^sshift); ||z||_1 <= sqrt(n) ||Hx||_2 = n ||x||_2 <= 128 n^1.5
    acc_bound=lambda v: 3 * 128 * math.isqrt(v.attrs["n"] ** 3) + 128 * v.attrs["n"] + 256,
    doc="FWHT, optional per-coefficient scale, integer thresholds, FWHT, crop, optional residual, "
        ">> (log2 n + oshift), clamp",
))


# ---- smooth-thresholding table: built by the converter, bounded here ----

def _pow2_terms(f: float, terms: int = TABLE_TERMS, max_e: int = 24) -> list[int]:
    """Greedy signed-power-of-two expansion of f in [0, 1] as table codes (closest term each step)."""
    codes, rest = [], f
    for _ in range(terms):
        if abs(rest) < 2.0 ** -max_e:
            codes.append(0)
            continue
        e = min(max(int(round(-math.log2(abs(rest)))), 0), max_e)
        codes.append(int(math.copysign(e + 1, rest)))
        rest -= math.copysign(2.0 ** -e, rest)
    return codes


def smooth_table(scale_z: float) -> tuple[int, np.ndarray]:
    """(g, codes[3, 256]) approximating tanh(|z| * scale_z) on buckets |z| >> g, covering tanh up to 1."""
    g = 0
    while TABLE_LEN * (1 << g) * scale_z < 6.0 and g < 31:  # tanh(6) = 1 - 1.2e-5
        g += 1
    codes = np.zeros((TABLE_TERMS, TABLE_LEN), dtype=np.int8)
    for i in range(TABLE_LEN):
        lo, hi = _bucket_tanh(i, g, scale_z)
        codes[:, i] = _pow2_terms(0.5 * (lo + hi))
    return g, codes


def _bucket_tanh(i: int, g: int, scale_z: float) -> tuple[float, float]:
    """tanh over the integers |z| of bucket i ([i 2^g, (i+1) 2^g - 1]; the last one is open above)."""
    hi = 1.0 if i == TABLE_LEN - 1 else math.tanh((((i + 1) << g) - 1) * scale_z)
    return math.tanh((i << g) * scale_z), hi


def smooth_factor(codes: np.ndarray, i: int) -> float:
    return sum(math.copysign(2.0 ** (1 - abs(int(c))), c) for c in codes[:, i] if c)


def smooth_error_bound(scale_z: float, g: int, codes: np.ndarray) -> float:
    """Largest |factor - tanh(|z| scale_z)| over all |z|: the integer output y obeys
    |y - tanh(|z| s_z) r| <= bound * r + 3 (three truncating shifts), r = max(|z| - T, 0)."""
    worst = 0.0
    for i in range(TABLE_LEN):
        f = smooth_factor(codes, i)
        worst = max(worst, *(abs(f - t) for t in _bucket_tanh(i, g, scale_z)))
    return worst
