"""Integer arithmetic shared by every op: rounding shifts, requantisation, saturation.

These helpers are the spec the C and CUDA kernels follow bit for bit.
"""
from __future__ import annotations

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class WrapError(ArithmeticError):
    """A value left the integer range the graph declared: the file's range proof was wrong."""


def check_range(v: np.ndarray, lo: int, hi: int, what: str) -> np.ndarray:
    if v.size and (int(v.min()) < lo or int(v.max()) > hi):
        raise WrapError(f"{what}: value range [{int(v.min())}, {int(v.max())}] exceeds [{lo}, {hi}]")
    return v


def rshift_round(v: np.ndarray, s: np.ndarray | int) -> np.ndarray:
    """Arithmetic right shift by s >= 0 rounding half up: floor((v + 2^(s-1)) / 2^s); s == 0 is exact."""
    v = np.asarray(v, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return np.right_shift(v + half, s)


def requantize(acc: np.ndarray, mult: np.ndarray | int, shift: np.ndarray | int, lo: int, hi: int) -> np.ndarray:
    """int32 accumulator -> int8: clamp(rshift_round(acc * mult, shift), lo, hi).

    mult in [0, 2^31), shift in [0, 63], per channel (last axis) or per tensor. acc * mult is exact in
    int64 because |acc| < 2^31. A power-of-two mult makes the whole step shift-only (multiplier-free).
    """
    acc = check_range(np.asarray(acc, dtype=np.int64), INT32_MIN, INT32_MAX, "accumulator")
    v = rshift_round(acc * np.asarray(mult, dtype=np.int64), shift)
    return np.clip(v, lo, hi).astype(np.int8)


def is_pow2(m: int) -> bool:
    return m > 0 and (m & (m - 1)) == 0


def quantize_multiplier(real: float, max_shift: int = 63) -> tuple[int, int]:
    """A real factor > 0 as (mult, shift) with mult in [2^30, 2^31): real ~= mult / 2^shift."""
    if real <= 0:
        return 0, 0
    mant, exp = np.frexp(real)  # real = mant * 2^exp, mant in [0.5, 1)
    mult = int(round(mant * 2**31))
    shift = 31 - int(exp)
    if mult == 2**31:
        mult, shift = 2**30, shift - 1
    while shift < 0:  # factor >= 2^31: not representable without overflow
        raise ValueError(f"requantisation factor {real} too large")
    while shift > max_shift:
        mult, shift = mult >> 1, shift - 1
    return mult, shift


SHORT_BITS = 12  # the least precision a short multiplier keeps: relative error <= 2^-12, far below an int8 step


def short_multiplier(real: float, bound: int) -> tuple[int, int] | None:
    """The most precise (mult, shift) ~ real with mult * bound + 2^(shift-1) <= INT32_MAX and shift <= 31, so
    acc * mult rounds and shifts in int32 for every |acc| <= bound (the SIMD int32 requantisation); None where
    that would keep fewer than SHORT_BITS bits."""
    mant, exp = np.frexp(real)
    for bits in range(31, SHORT_BITS - 1, -1):
        mult, shift = int(round(mant * 2**bits)), bits - int(exp)
        if mult == 2**bits:
            mult, shift = mult >> 1, shift - 1
        if 0 <= shift <= 31 and mult * bound + ((1 << shift) >> 1) <= INT32_MAX:
            return mult, shift
    return None


def pow2_multiplier(real: float) -> tuple[int, int]:
    """Nearest power of two to a real factor > 0, as (mult=1, shift) or (2^e, 0): multiplier-free."""
    e = int(round(np.log2(real)))
    if e <= 0:
        return 1, min(-e, 63)
    if e > 30:
        raise ValueError(f"requantisation factor {real} too large")
    return 1 << e, 0
