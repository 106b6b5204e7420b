"""Multiplication-free layers (torch.nn modules, CPU and GPU, differentiable).

* ``fwht``: fast Walsh-Hadamard transform along one dimension, log2(n)
  butterfly stages of additions/subtractions (no n x n matmul).
* ``WHT``: the 1x1-conv replacement of Pan, Badawi & Cetin (CVPR-W 2021,
  seed 000) / Gozler & Isik (seed 002)::

      x  -> zero-pad channels to n = 2**k >= max(C_in, C_out)
      z  = H x / sqrt(n)                      (orthonormal, natural order)
      z'_0 = z_0                              (DC passed through)
      z'_c = sign(z_c) relu(|z_c| - T_c)      mode='soft'
      z'_c = tanh(z_c) relu(|z_c| - T_c)      mode='smooth'
      y  = H z' / sqrt(n), crop to C_out, (+ x if residual and C_in == C_out)

  ``T`` has shape (n,), T >= 0 (clamped in forward and by ``clamp_()``),
  indexed in the chosen ordering: 'hadamard' = natural (Sylvester) order,
  'walsh' = sequency order (row s of the Walsh matrix is Hadamard row
  bitrev(gray(s))).  T[0] belongs to the DC coefficient and is unused.
* ``HadamardDepthwise``: 3x3 depthwise conv (padding 1, stride 1 or 2) with
  the product x*w replaced by a multiplication-free operator,
  y = sum_window op(x, w) + b, op = 'min': 1/2(|x+w| - |x-w|)
  (= sign(x)sign(w)min(|x|,|w|)) or 'ef': sign(x)sign(w)(|x|+|w|).
* ``StructuredConv2d``: Bhalgat et al. (seed 001) structured convolution.
  A C x N x N kernel is a sum of C'*N'*N' binary masks (each a block of ones
  of size (C-C'+1) x (N-N'+1) x (N-N'+1)) weighted by alpha
  (shape C_out x C' x N' x N'); ``decompose()`` returns the equivalent
  sum-pooling (channel x spatial window, stride 1) followed by a C' x N' x N'
  conv.  ``structural_loss`` is the structural regularization
  ||(I - A A^+) W|| / ||W|| that drives an ordinary conv toward that
  structure.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "next_pow2", "fwht", "walsh_permutation", "hadamard_matrix",
    "WHT", "HadamardDepthwise", "SumPool", "StructuredDecomposed",
    "StructuredConv2d", "composite_kernel", "structure_basis",
    "structural_loss", "clamp_thresholds_",
]


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (>= 1)."""
    return 1 << max(0, (int(n) - 1).bit_length())


def _fwht_raw(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Butterfly FWHT without autograd (two ping-pong buffers)."""
    n = x.shape[dim]
    pre = math.prod(x.shape[:dim])
    post = math.prod(x.shape[dim + 1:])
    y = x.reshape(pre, n, post).clone()
    if n == 1:
        return y.reshape(x.shape)
    buf = torch.empty_like(y)
    h = 1
    while h < n:
        v = y.view(pre, n // (2 * h), 2, h, post)
        o = buf.view(pre, n // (2 * h), 2, h, post)
        torch.add(v[:, :, 0], v[:, :, 1], out=o[:, :, 0])
        torch.sub(v[:, :, 0], v[:, :, 1], out=o[:, :, 1])
        y, buf = buf, y
        h *= 2
    return y.reshape(x.shape)


class _FWHTFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        return _fwht_raw(x, dim)

    @staticmethod
    def backward(ctx, g):
        # H is symmetric: the vector-Jacobian product is again a FWHT
        return _fwht_raw(g.contiguous(), ctx.dim), None


def fwht(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Unnormalised fast Walsh-Hadamard transform along ``dim`` (natural
    Sylvester order, i.e. ``scipy.linalg.hadamard(n) @ x``).

    log2(n) stages, each a batch of butterflies (a+b, a-b); differentiable
    (its backward pass is again a FWHT)."""
    dim = dim % x.dim()
    n = x.shape[dim]
    if n & (n - 1) or n == 0:
        raise ValueError(f"fwht needs a power-of-two length, got {n}")
    return _FWHTFunction.apply(x.contiguous(), dim)


def _bitrev(v: int, bits: int) -> int:
    r = 0
    for _ in range(bits):
        r = (r << 1) | (v & 1)
        v >>= 1
    return r


def walsh_permutation(n: int) -> list[int]:
    """perm[s] = index of the natural-order Hadamard row with sequency s
    (Gray code followed by bit reversal, as in seed 002's Algorithm 1)."""
    if n & (n - 1) or n == 0:
        raise ValueError(f"need a power of two, got {n}")
    bits = n.bit_length() - 1
    return [_bitrev(s ^ (s >> 1), bits) for s in range(n)]


def hadamard_matrix(n: int, ordering: str = "hadamard") -> torch.Tensor:
    """Unnormalised +-1 matrix (reference / tests); rows in the given order."""
    h = fwht(torch.eye(n, dtype=torch.float64), dim=0)
    if ordering == "walsh":
        h = h[walsh_permutation(n)]
    elif ordering != "hadamard":
        raise ValueError(f"ordering must be 'hadamard' or 'walsh', not {ordering!r}")
    return h


class WHT(nn.Module):
    """Walsh-Hadamard layer replacing a 1x1 convolution (see module doc).

    Attributes used by the integer converter: ``n``, ``ordering``, ``mode``,
    ``residual``, ``in_channels``, ``out_channels``, the parameter ``T``
    (shape (n,), T[0] unused) and, with ``scale=True``, the parameter ``V``
    (shape (n,), init 1): every coefficient is multiplied by V before the
    thresholds, so H diag(V) H is a learned dyadic convolution over channels.
    Without V the layer has no learned channel mixing: with T = 0 it is the
    identity (padded and cropped), so all it learns is which coefficients to
    shrink."""

    def __init__(self, in_channels: int, out_channels: int, mode: str = "smooth",
                 ordering: str = "hadamard", residual: bool = False,
                 init_threshold: float | str = "uniform", scale: bool = False):
        super().__init__()
        if mode not in ("soft", "smooth"):
            raise ValueError(f"mode must be 'soft' or 'smooth', not {mode!r}")
        if ordering not in ("hadamard", "walsh"):
            raise ValueError(f"ordering must be 'hadamard' or 'walsh', not {ordering!r}")
        if residual and in_channels != out_channels:
            raise ValueError("residual needs in_channels == out_channels")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.n = next_pow2(max(in_channels, out_channels))
        self.mode = mode
        self.ordering = ordering
        self.residual = bool(residual)
        if init_threshold == "uniform":
            # T ~ U(0, std of a coefficient for unit-variance inputs) = U(0, sqrt(C_in / n)).
            # Equal thresholds would make an expanding layer useless at init: H_n [x; 0] is
            # H_m x repeated n/m times (m = next_pow2(C_in)), so with T equal across the
            # repeats every output channel beyond m is exactly zero (soft) or a tiny DC
            # leak (smooth), and a following BatchNorm blows those channels (and the
            # gradients) up by 1/sigma.  Distinct random thresholds break that symmetry.
            t = torch.rand(self.n) * math.sqrt(self.in_channels / self.n)
        else:
            t = torch.full((self.n,), float(init_threshold))
        self.T = nn.Parameter(t)
        self.V = nn.Parameter(torch.ones(self.n)) if scale else None
        if ordering == "walsh":
            perm = walsh_permutation(self.n)
            inv = [0] * self.n
            for s, j in enumerate(perm):
                inv[j] = s          # natural index j has sequency inv[j]
            idx = torch.tensor(inv, dtype=torch.long)
        else:
            idx = torch.arange(self.n)
        # maps natural coefficient index -> index into T
        self.register_buffer("_t_index", idx, persistent=False)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, n={self.n}, mode={self.mode}, "
                f"ordering={self.ordering}, residual={self.residual}")

    def thresholds_natural(self) -> torch.Tensor:
        """T >= 0 rearranged to natural (Hadamard) coefficient order."""
        return self.T.clamp(min=0)[self._t_index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x, self.V)

    def transform(self, x: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
        """The layer with scales v (shape (n,), chosen ordering) in place of V (None: unscaled)."""
        c = x.shape[1]
        if c != self.in_channels:
            raise ValueError(f"WHT expects {self.in_channels} channels, got {c}")
        n = self.n
        scale = 1.0 / math.sqrt(n)
        # z = H_n [x; 0] / sqrt(n).  With m = next_pow2(C_in) and the Sylvester
        # form H_n = H_{n/m} (x) H_m, H_n [x; 0] is H_m [x; 0_m] repeated n/m
        # times: transform m channels, then tile (exact, fewer additions).
        m = next_pow2(c)
        xp = F.pad(x, (0, 0, 0, 0, 0, m - c)) if c < m else x
        z = fwht(xp, 1) * scale
        if m < n:
            z = z.repeat(1, n // m, *([1] * (x.dim() - 2)))
        if v is not None:  # learned channel mixing: H diag(v) H is a dyadic convolution
            z = self._scaled(z, v)
        t = self.thresholds_natural()[1:].view(1, -1, *([1] * (x.dim() - 2)))
        zc = z[:, 1:]
        mag = F.relu(zc.abs() - t)
        zc = (torch.sign(zc) if self.mode == "soft" else torch.tanh(zc)) * mag
        z = torch.cat((z[:, :1], zc), dim=1)
        # y = first C_out rows of H_n z' / sqrt(n).  With m' = next_pow2(C_out),
        # those rows are H_m' (sum of the n/m' blocks of z') (first row of
        # H_{n/m'} is all ones): add the blocks, then a size-m' transform.
        mo = next_pow2(self.out_channels)
        if mo < n:
            z = z.reshape(z.shape[0], n // mo, mo, *z.shape[2:]).sum(1)
        y = fwht(z, 1) * scale
        y = y[:, :self.out_channels]
        if self.residual:
            y = y + x
        return y

    def _scaled(self, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Coefficients z (natural order on dim 1) times v (chosen ordering)."""
        return z * v[self._t_index].view(1, -1, *([1] * (z.dim() - 2)))

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Literal definition with explicit +-1 matrices (tests only; slow)."""
        n = self.n
        h = hadamard_matrix(n).to(x) / math.sqrt(n)
        xp = F.pad(x, (0, 0, 0, 0, 0, n - x.shape[1]))
        z = torch.einsum("ij,bj...->bi...", h, xp)
        if self.V is not None:
            z = self._scaled(z, self.V)
        t = self.thresholds_natural().view(1, -1, *([1] * (x.dim() - 2)))
        f = torch.sign(z) if self.mode == "soft" else torch.tanh(z)
        zt = f * F.relu(z.abs() - t)
        zt[:, 0] = z[:, 0]
        y = torch.einsum("ij,bj...->bi...", h, zt)[:, :self.out_channels]
        return y + x if self.residual else y

    @torch.no_grad()
    def clamp_(self) -> None:
        self.T.clamp_(min=0)


class HadamardDepthwise(nn.Module):
    """3x3 depthwise 'convolution' with a multiplication-free operator.

    y[n,c,i,j] = b[c] + sum_{u,v} op(x_pad[n,c,s*i+u,s*j+v], w[c,0,u,v]),
    padding 1 (zeros; op(0, w) = 0 for both operators), stride ``stride``."""

    def __init__(self, channels: int, stride: int = 1, op: str = "min", bias: bool = True):
        super().__init__()
        if op not in ("min", "ef"):
            raise ValueError(f"op must be 'min' or 'ef', not {op!r}")
        if stride not in (1, 2):
            raise ValueError("stride must be 1 or 2")
        self.channels = int(channels)
        self.stride = int(stride)
        self.padding = 1
        self.kernel_size = 3
        self.op = op
        self.weight = nn.Parameter(torch.randn(channels, 1, 3, 3))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def extra_repr(self) -> str:
        return f"{self.channels}, stride={self.stride}, op={self.op}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _HadamardDWFunction.apply(x, self.weight, self.bias, self.stride, self.op)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Plain autograd formulation with unfold (tests / reference)."""
        n, c, h, w = x.shape
        ho = (h + 2 - 3) // self.stride + 1
        wo = (w + 2 - 3) // self.stride + 1
        cols = F.unfold(x, 3, padding=1, stride=self.stride).view(n, c, 9, ho * wo)
        k = self.weight.view(1, c, 9, 1)
        if self.op == "min":
            y = 0.5 * ((cols + k).abs() - (cols - k).abs())
        else:
            y = torch.sign(cols) * torch.sign(k) * (cols.abs() + k.abs())
        y = y.sum(2)
        if self.bias is not None:
            y = y + self.bias.view(1, c, 1)
        return y.view(n, c, ho, wo)


def _dw_taps(xp, stride, ho, wo):
    for u in range(3):
        for v in range(3):
            yield u, v, xp[:, :, u:u + stride * (ho - 1) + 1:stride,
                           v:v + stride * (wo - 1) + 1:stride]


class _HadamardDWFunction(torch.autograd.Function):
    """Tap-by-tap forward/backward (saves only x and w, no 9x unfold).

    min: op = 1/2(|x+w| - |x-w|) = sign(w) clamp(x, -|w|, |w|)
         d/dx = sign(w) [|x| < |w|],  d/dw = sign(x) [|x| > |w|]
    ef:  op = sign(x) sign(w) (|x| + |w|)
         d/dx = sign(w) [x != 0],     d/dw = sign(x) [w != 0]"""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, op):
        n, c, h, w = x.shape
        ho = (h + 2 - 3) // stride + 1
        wo = (w + 2 - 3) // stride + 1
        xp = F.pad(x, (1, 1, 1, 1))
        wk = weight.reshape(c, 3, 3)
        y = x.new_zeros(n, c, ho, wo)
        for u, v, xs in _dw_taps(xp, stride, ho, wo):
            wt = wk[:, u, v].view(1, c, 1, 1)
            if op == "min":
                a = wt.abs()
                y.addcmul_(torch.clamp(xs, -a, a), torch.sign(wt))
            else:
                y += torch.sign(xs) * torch.sign(wt) * (xs.abs() + wt.abs())
        if bias is not None:
            y += bias.view(1, c, 1, 1)
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.op, ctx.has_bias = stride, op, bias is not None
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        stride, op = ctx.stride, ctx.op
        n, c, h, w = x.shape
        ho, wo = g.shape[2], g.shape[3]
        xp = F.pad(x, (1, 1, 1, 1))
        wk = weight.reshape(c, 3, 3)
        gxp = torch.zeros_like(xp) if ctx.needs_input_grad[0] else None
        gw = torch.zeros(c, 3, 3, dtype=weight.dtype, device=weight.device)
        for u, v, xs in _dw_taps(xp, stride, ho, wo):
            wt = wk[:, u, v].view(1, c, 1, 1)
            if op == "min":
                xa, wa = xs.abs(), wt.abs()
                inside = xa < wa
                gdx = torch.where(inside, g, 0.0) * torch.sign(wt)
                gdw = torch.where(xa > wa, g * torch.sign(xs), 0.0)
            else:
                gdx = torch.where(xs != 0, g, 0.0) * torch.sign(wt)
                gdw = g * torch.sign(xs) * (wt != 0).to(g.dtype)
            if gxp is not None:
                gxp[:, :, u:u + stride * (ho - 1) + 1:stride,
                    v:v + stride * (wo - 1) + 1:stride] += gdx
            gw[:, u, v] = gdw.sum((0, 2, 3))
        gx = gxp[:, :, 1:h + 1, 1:w + 1] if gxp is not None else None
        gb = g.sum((0, 2, 3)) if ctx.has_bias else None
        return gx, gw.view_as(weight), gb, None, None


# ----------------------------------------------------------------------------
# Structured convolutions (seed 001)


def composite_kernel(alpha: torch.Tensor, kc: int, kh: int, kw: int) -> torch.Tensor:
    """Kernel sum_m alpha_m * mask_m: alpha (O, C', N', N') -> (O, C'+kc-1, N'+kh-1, N'+kw-1).

    Each alpha entry contributes a (kc x kh x kw) block of ones."""
    ones = alpha.new_ones(1, 1, kc, kh, kw)
    return F.conv_transpose3d(alpha.unsqueeze(1), ones).squeeze(1)


def structure_basis(c: int, n: int, c_prime: int, n_prime: int,
                    dtype=torch.float64) -> torch.Tensor:
    """Matrix A (c*n*n, c'*n'*n') whose columns are the flattened binary masks."""
    m = c_prime * n_prime * n_prime
    eye = torch.eye(m, dtype=dtype).view(m, c_prime, n_prime, n_prime)
    k = composite_kernel(eye, c - c_prime + 1, n - n_prime + 1, n - n_prime + 1)
    return k.reshape(m, -1).t().contiguous()


def structural_loss(weight: torch.Tensor, c_prime: int, n_prime: int,
                    projector: torch.Tensor | None = None) -> torch.Tensor:
    """Structural regularization ||W - A A^+ W||_F / ||W||_F for a conv
    weight (O, C, N, N): zero iff every filter is a sum of the binary masks."""
    o, c, kh, kw = weight.shape
    if kh != kw:
        raise ValueError("square kernels only")
    if projector is None:
        a = structure_basis(c, kh, c_prime, n_prime, dtype=torch.float64)
        projector = (a @ torch.linalg.pinv(a)).to(weight)
    w = weight.reshape(o, -1)
    resid = w - w @ projector.t()
    return resid.norm() / w.norm().clamp_min(1e-12)


class SumPool(nn.Module):
    """Sum over a (kc x kh x kw) window of (channel, row, col), stride 1,
    after zero-padding the spatial dims by ``padding``.  Additions only."""

    def __init__(self, kernel: tuple[int, int, int], padding: int = 0):
        super().__init__()
        self.kernel = tuple(int(k) for k in kernel)
        self.padding = int(padding)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, padding={self.padding}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding:
            x = F.pad(x, (self.padding,) * 4)
        for dim, k in zip((1, 2, 3), self.kernel):
            if k > 1:
                m = x.shape[dim] - k + 1
                acc = x.narrow(dim, 0, m)
                for i in range(1, k):
                    acc = acc + x.narrow(dim, i, m)
                x = acc
        return x


class StructuredDecomposed(nn.Sequential):
    """SumPool followed by the small conv (what ``StructuredConv2d.decompose`` returns)."""


class StructuredConv2d(nn.Module):
    """Structured 3x3 (or N x N) convolution, groups=1.

    mode='composite' (default): the trainable parameter is ``alpha_p`` = alpha
    (O, C', N', N') times its coverage; the kernel is always exactly structured.
    mode='regularized': an ordinary ``weight`` (O, C, N, N) is trained; add
    ``structural_loss()`` (times a lambda) to the loss; ``decompose()``
    projects onto the structure first (exact when the loss is zero)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding: int = 1, bias: bool = False,
                 c_prime: int | None = None, k_prime: int = 2, mode: str = "composite"):
        super().__init__()
        if mode not in ("composite", "regularized"):
            raise ValueError(f"mode must be 'composite' or 'regularized', not {mode!r}")
        c_prime = in_channels if c_prime is None else int(c_prime)
        if not (1 <= c_prime <= in_channels and 1 <= k_prime <= kernel_size):
            raise ValueError("need 1 <= c_prime <= in_channels and 1 <= k_prime <= kernel_size")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = int(kernel_size), int(stride), int(padding)
        self.c_prime, self.k_prime, self.mode = c_prime, int(k_prime), mode
        self.pool_kernel = (in_channels - c_prime + 1, kernel_size - k_prime + 1,
                            kernel_size - k_prime + 1)
        fan_in = in_channels * kernel_size * kernel_size
        bound = math.sqrt(6.0 / fan_in)          # kaiming-uniform for ReLU
        if mode == "composite":
            # each alpha feeds ~cover kernel taps, so a plain alpha would move the
            # kernel ~cover^2 times faster than an ordinary conv at the same LR (and
            # BatchNorm's running statistics lag behind). Train alpha_p = alpha * cover:
            # gradient steps then move the kernel like an ordinary conv's.
            self.cover = self.pool_kernel[0] * self.pool_kernel[1] * self.pool_kernel[2]
            alpha = torch.empty(out_channels, c_prime, k_prime, k_prime)
            # roughly kaiming variance for the composite kernel
            nn.init.uniform_(alpha, -bound / math.sqrt(self.cover), bound / math.sqrt(self.cover))
            self.alpha_p = nn.Parameter(alpha * self.cover)
        else:
            w = torch.empty(out_channels, in_channels, kernel_size, kernel_size)
            nn.init.uniform_(w, -bound, bound)
            self.weight = nn.Parameter(w)
            a = structure_basis(in_channels, kernel_size, c_prime, k_prime)
            self.register_buffer("_pinv", torch.linalg.pinv(a).float(), persistent=False)
            self.register_buffer("_basis", a.float(), persistent=False)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, "
                f"stride={self.stride}, c'={self.c_prime}, k'={self.k_prime}, mode={self.mode}")

    def structured_alpha(self) -> torch.Tensor:
        """alpha (exact in composite mode; least-squares projection otherwise)."""
        if self.mode == "composite":
            return self.alpha_p / self.cover
        w = self.weight.reshape(self.out_channels, -1)
        return (w @ self._pinv.t()).view(self.out_channels, self.c_prime,
                                         self.k_prime, self.k_prime)

    def composite_weight(self) -> torch.Tensor:
        return composite_kernel(self.structured_alpha(), *self.pool_kernel)

    def effective_weight(self) -> torch.Tensor:
        return self.composite_weight() if self.mode == "composite" else self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding)

    def structural_loss(self) -> torch.Tensor:
        if self.mode == "composite":
            return self.alpha_p.new_zeros(())
        proj = self._basis @ self._pinv
        return structural_loss(self.weight, self.c_prime, self.k_prime, projector=proj)

    @torch.no_grad()
    def decompose(self) -> StructuredDecomposed:
        """Sum-pooling over (C-C'+1) x (N-N'+1)^2 windows then a C' -> C_out
        N' x N' conv with the given stride; equal to the composite conv."""
        pool = SumPool(self.pool_kernel, padding=self.padding)
        alpha = self.structured_alpha()
        conv = nn.Conv2d(self.c_prime, self.out_channels, self.k_prime, stride=self.stride,
                         padding=0, bias=self.bias is not None, dtype=alpha.dtype,
                         device=alpha.device)
        conv.weight.copy_(alpha)
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        return StructuredDecomposed(pool, conv)


@torch.no_grad()
def clamp_thresholds_(model: nn.Module) -> None:
    """Keep every WHT threshold >= 0 (call after each optimizer step)."""
    for m in model.modules():
        if isinstance(m, WHT):
            m.clamp_()
