"""Optimal-transport distances between two batches of points: the WNAE's loss and model-selection criterion.

Equal-weight point clouds (a batch of training jets' model inputs and a batch of MCMC negatives), squared-
Euclidean ground cost; exact (an assignment problem for equal sizes), entropic (Sinkhorn) or sliced. Distances
between jets' constituents (EMD / W_p in the (eta, phi) plane) are `jetad.physics.emd`, another problem.
"""

from __future__ import annotations

import math

import torch

__all__ = ["DISTANCES", "wasserstein_distance"]

DISTANCES = ("emd", "sinkhorn", "sliced")


def wasserstein_distance(x: torch.Tensor, y: torch.Tensor, kind: str = "emd", *, sinkhorn_reg: float = 0.01,
                         sinkhorn_iter: int = 100, n_projections: int = 128,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Optimal-transport cost between two equal-weight point clouds, squared-Euclidean ground cost (W_2^2).

    'emd': exact; for equal sizes an optimal plan of uniform weights is a permutation / n (Birkhoff-von
    Neumann), so it is the assignment problem (scipy's `linear_sum_assignment`, shortest augmenting paths,
    Crouse 2016), the same value and gradient as POT's `ot.emd2` (the WNAE reference, used for unequal
    sizes) at a fraction of its time (docs/benchmarks/ot.md); 'sinkhorn': entropic plan (log domain,
    epsilon = `sinkhorn_reg` times the mean cost), transport cost <plan, C> with the envelope gradient
    (the plan, as `ot.emd2`), slightly above the exact value; 'sliced': the mean of 1D W_2^2
    over `n_projections` random directions (O(n log n); about W_2^2 / dim). All differentiable in x and y.
    """
    x, y = x.flatten(1), y.flatten(1)
    if kind == "sliced":
        theta = torch.randn(x.shape[1], n_projections, generator=generator).to(x)
        theta = theta / theta.norm(dim=0, keepdim=True)
        px, py = (x @ theta).sort(0).values, (y @ theta).sort(0).values
        return ((px - py) ** 2).mean()
    cost = torch.cdist(x, y) ** 2
    if kind == "emd" and len(x) == len(y):
        return _assignment_cost(cost)
    if kind == "emd":
        import ot

        w = torch.full((len(x),), 1.0 / len(x), dtype=x.dtype, device=x.device)
        return ot.emd2(w, torch.full((len(y),), 1.0 / len(y), dtype=y.dtype, device=y.device), cost,
                       numItermax=1_000_000)
    if kind == "sinkhorn":
        eps = sinkhorn_reg * float(cost.detach().mean().clamp_min(1e-12))
        log_a = torch.full((len(x),), -math.log(len(x)), dtype=x.dtype, device=x.device)
        log_b = torch.full((len(y),), -math.log(len(y)), dtype=y.dtype, device=y.device)
        c = cost.detach()
        f, g = torch.zeros_like(log_a), torch.zeros_like(log_b)
        for _ in range(sinkhorn_iter):  # dual potentials, log domain; the plan is a b exp((f + g - C) / eps)
            f_new = -eps * torch.logsumexp(log_b[None, :] + (g[None, :] - c) / eps, dim=1)
            converged = float((f_new - f).abs().max()) < 1e-3 * eps  # marginals within 0.1%
            f = f_new
            if converged:
                break
            g = -eps * torch.logsumexp(log_a[:, None] + (f[:, None] - c) / eps, dim=0)
        plan = torch.exp(log_a[:, None] + log_b[None, :] + (f[:, None] + g[None, :] - c) / eps)
        return (plan * cost).sum()  # envelope gradient: d/dC = plan, no back-propagation through the loop
    raise ValueError(f"distance must be one of {DISTANCES}, got {kind!r}")


def _assignment_cost(cost: torch.Tensor) -> torch.Tensor:
    """Exact OT cost of two equal-size uniform clouds, mean_i C[i, sigma(i)] for the optimal permutation.

    Differentiable in the cost: the gradient is the plan (1/n on the permutation), as for `ot.emd2`.
    """
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost.detach().to("cpu", torch.float64).numpy())
    index = torch.as_tensor(rows * cost.shape[1] + cols, device=cost.device)
    return cost.flatten()[index].mean()
