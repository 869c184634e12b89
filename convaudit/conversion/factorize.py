"""The math of the rewrite: factor a conv weight into depthwise and pointwise parts.

Depthwise→pointwise (DESIGN §2): for each input channel i, M_i = W[:, i].reshape(Cout/g, ∏k) has SVD
U S Vᵀ; the top m terms give m depthwise kernels (rows of Vᵀ) and a pointwise column block (U·S).
At m = min(Cout/g, ∏k) the factorisation is exact; below, it is the best rank-m fit in weight space,
or, given the input patch covariance C_i = L_i L_iᵀ of channel i, the best fit of the layer's
*outputs* on that data (SVD of M_i L_i, mapped back with L_i⁻¹).

Pointwise→depthwise (BSConv-U): for each output channel o, W[o].reshape(Cin/g, ∏k) ≈ Σ_r p_r d_rᵀ:
the pointwise part makes m channels per output channel, the depthwise part (groups = Cout, m inputs
per group) filters and sums them. Exact at m = min(Cin/g, ∏k).

Everything is computed in float64 and returned in float64; callers cast to the layer's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from convaudit.analysis.separability import per_input_channel

__all__ = ["Factors", "dw_pw_factors", "energy", "patch_covariance", "pw_dw_factors", "thin_svd"]


@dataclass(frozen=True)
class Factors:
    """Weights of the two parts, and the share of the weight energy they keep."""

    first: torch.Tensor  #: weight of the part applied first (dw for dw_pw, pw for pw_dw)
    second: torch.Tensor  #: weight of the part applied second
    energy: float  #: Σ_{r≤m} s_r² / Σ s_r², pooled over channels (1.0 = exact)


def thin_svd(a: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched thin SVD (b, r, c) → U (b, r, k), S (b, n), Vᵀ (b, k, c) with n = min(r, c), S descending.

    Only the top ``k`` singular vectors are formed (all of them by default); S always has all n values.
    Conv weight matrices are tall and thin (c = ∏k is small), so the eigendecomposition of the small
    Gram matrix is far faster than LAPACK's SVD on CPU. NB: squaring costs precision: singular values
    below ~1e-7·s_max are noise there, so they are set to 0 (and their vectors to 0); U·S·Vᵀ still
    reproduces A to ~1e-7 relative, far inside the 1e-5 that an exact rewrite promises.
    """
    a = a.double()
    transpose = a.shape[-1] > a.shape[-2]
    if transpose:
        a = a.transpose(-1, -2)
    evals, evecs = torch.linalg.eigh(a.transpose(-1, -2) @ a)  # ascending
    evals, evecs = evals.flip(-1), evecs.flip(-1)
    s = evals.clamp_min(0).sqrt()
    s = s * (s > s[..., :1] * 1e-7)
    k = s.shape[-1] if k is None else min(k, s.shape[-1])
    top, v = s[..., :k], evecs[..., :k]
    u = (a @ v) / torch.where(top > 0, top, 1.0).unsqueeze(-2)
    u = u * (top > 0).unsqueeze(-2)
    if transpose:  # A = U S Vᵀ  ⇒  Aᵀ = V S Uᵀ
        return v, s, u.transpose(-1, -2)
    return u, s, v.transpose(-1, -2)


def energy(singular_values: torch.Tensor, m: int) -> float:
    """Share of Σ s² kept by the top m singular values, pooled over the batch of matrices."""
    sq = singular_values.double() ** 2
    total = float(sq.sum())
    return float(sq[..., :m].sum()) / total if total > 0 else 1.0


def dw_pw_factors(weight: torch.Tensor, groups: int, m: int, covariance: torch.Tensor | None = None) -> Factors:
    """Depthwise (Cin·m, 1, *k) and pointwise (Cout, Cin·m/g, 1…) weights for W (Cout, Cin/g, *k).

    ``covariance``: (Cin, ∏k, ∏k) input patch covariance per channel, for the data-aware fit.
    """
    c_out = weight.shape[0]
    kernel = weight.shape[2:]
    mats = per_input_channel(weight.detach().double(), groups)  # (Cin, Cout/g, K)
    c_in, _, k = mats.shape
    if covariance is not None:
        chol = _cholesky(covariance.double(), k)  # (Cin, K, K), C = L Lᵀ
        u, s, vh = thin_svd(mats @ chol, m)
        vh = _map_back(vh, chol)
    else:
        u, s, vh = thin_svd(mats, m)
    r = s.shape[-1]
    kept = min(m, r)
    dw = torch.zeros(c_in, m, k, dtype=torch.float64)
    pw = torch.zeros(c_in, c_out // groups, m, dtype=torch.float64)
    dw[:, :kept] = vh[:, :kept]
    pw[:, :, :kept] = u[:, :, :kept] * s[:, None, :kept]
    if covariance is not None:  # D = Vᵀ L⁻¹ has arbitrary row norms: move each kernel's scale into P
        norms = dw.norm(dim=-1)  # (Cin, m)
        dw = dw / torch.where(norms > 0, norms, 1.0).unsqueeze(-1)
        pw = pw * norms.unsqueeze(1)
    # pw[i] is (Cout/g, m) for input channel i = gi·(Cin/g) + j  →  weight[gi·Cout/g + o, j·m + r]
    c_in_g = c_in // groups
    pw = pw.reshape(groups, c_in_g, c_out // groups, m).permute(0, 2, 1, 3).reshape(c_out, c_in_g * m)
    return Factors(
        first=dw.reshape(c_in * m, 1, *kernel),
        second=pw.reshape(c_out, c_in_g * m, *([1] * len(kernel))),
        energy=energy(s, m),
    )


def _cholesky(cov: torch.Tensor, k: int) -> torch.Tensor:
    """Lower Cholesky factor of each channel's covariance, regularised layer-wide so it always exists.

    A channel that was (nearly) silent on the calibration data carries no information about how to
    fit it: it gets the isotropic covariance, i.e. the plain weight-space fit, instead of a near-zero
    factor whose inverse would blow its depthwise kernel up once the channel wakes.
    """
    activity = cov.diagonal(dim1=-2, dim2=-1).mean(-1)  # (Cin,) mean patch energy per tap
    level = float(activity.mean()) if float(activity.mean()) > 0 else 1.0
    eye = torch.eye(k, dtype=cov.dtype)
    silent = activity <= 1e-6 * level
    cov = torch.where(silent[:, None, None], level * eye, cov + 1e-6 * level * eye)
    return torch.linalg.cholesky(cov)


def _map_back(vh: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """Rows of Vᵀ live in the whitened space: D = Vᵀ L⁻¹."""
    return torch.linalg.solve_triangular(chol, vh, upper=False, left=False)


def pw_dw_factors(weight: torch.Tensor, groups: int, m: int) -> Factors:
    """Pointwise (Cout·m, Cin/g, 1…) and depthwise-like (Cout, m, *k) weights for W (Cout, Cin/g, *k).

    The second part has groups = Cout: output channel o sums its m filtered channels.
    """
    c_out, c_in_g = weight.shape[:2]
    kernel = weight.shape[2:]
    k = math.prod(kernel)
    mats = weight.detach().double().reshape(c_out, c_in_g, k)
    u, s, vh = thin_svd(mats, m)
    kept = min(m, s.shape[-1])
    pw = torch.zeros(c_out, m, c_in_g, dtype=torch.float64)
    dw = torch.zeros(c_out, m, k, dtype=torch.float64)
    pw[:, :kept] = (u[:, :, :kept] * s[:, None, :kept]).transpose(1, 2)
    dw[:, :kept] = vh[:, :kept]
    return Factors(
        first=pw.reshape(c_out * m, c_in_g, *([1] * len(kernel))),
        second=dw.reshape(c_out, m, *kernel),
        energy=energy(s, m),
    )


def patch_covariance(
    x: torch.Tensor,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[torch.Tensor, int]:
    """Σ p pᵀ over every patch of every channel of an already padded input (N, C, *spatial).

    Returns (sum of outer products (C, ∏k, ∏k) in float64, number of patches) so batches can be added.
    """
    nd = len(kernel)
    patches = x.detach().double()
    for d in range(nd):  # unfold each spatial dim: size = dilated kernel extent, then take every d-th tap
        span = dilation[d] * (kernel[d] - 1) + 1
        patches = patches.unfold(2 + d, span, stride[d])[..., :: dilation[d]]
    # patches: (N, C, *out, *k)  →  (C, P, K)
    c = patches.shape[1]
    k = math.prod(kernel)
    flat = patches.movedim(1, 0).reshape(c, -1, k)
    return flat.transpose(1, 2) @ flat, flat.shape[1]
