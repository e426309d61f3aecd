"""DisCo decorrelation (2001.05310): penalize the distance correlation between a detector's per-jet score
and a nuisance (jet mass, mjj) during training, so that cutting on the score does not sculpt the mass.
"""

from __future__ import annotations

import torch

__all__ = ["distance_correlation_sq"]


def distance_correlation_sq(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Squared distance correlation dCor^2(x, y) of (B,) or (B, D) tensors (Szekely 2007), differentiable, O(B^2).

    0 for independent variables, 1 for a linear relation; the DisCo loss term is lambda * dCor^2. A (B, D)
    argument (a representation) uses Euclidean distances between its rows.
    """
    x, y = (v.reshape(len(v), -1).to(torch.float64) for v in (x, y))
    w = torch.ones(len(x), dtype=torch.float64, device=x.device) if weights is None else \
        weights.flatten().to(torch.float64)
    w = w / w.mean()

    def centred(v: torch.Tensor) -> torch.Tensor:
        diff = v[:, None, :] - v[None, :, :]
        d = diff.abs()[..., 0] if v.shape[1] == 1 else (diff.square().sum(-1) + 1e-12).sqrt()
        row = (d * w[None, :]).mean(1)
        return d - row[:, None] - row[None, :] + (row * w).mean()

    a, b = centred(x), centred(y)
    ww = w[:, None] * w[None, :]
    dcov_xy = (a * b * ww).mean()
    dcov_xx = (a * a * ww).mean()
    dcov_yy = (b * b * ww).mean()
    return dcov_xy / torch.sqrt(dcov_xx * dcov_yy).clamp_min(1e-12)
