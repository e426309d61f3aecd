"""Langevin chains on a dense autoencoder's energy, with the gradient and its backward written out.

The NAE / WNAE sampler (2105.05735, CMS-PAS-MLG-24-002) steps x <- clamp(x - c grad_x E(x) + noise eta, box),
c = step_size / T, on the energy E(x) = mean_k (x_k - f(x)_k)^2 of an MLP autoencoder f (Linear layers, SiLU or ReLU
activations: `autoencoder.DenseCoder`); the WNAE loss is differentiated through every step. Autograd does
that with `create_graph`: a graph of the gradient's graph (~100 small operations a step) and a double
backward through it. Here both passes are written out for the MLP:

- forward pass a_l = h_(l-1) W_l^T + b_l, h_l = silu(a_l); backward pass g_L = -(2/d) r (r = x - f(x)),
  delta_l = g_l silu'(a_l), g_(l-1) = delta_l W_l; grad_x E = (2/d) r + g_0;
- the chain's backward: with v = dL/dx_(t+1) inside the box, dL/dx_t = v - c H v and
  dL/dtheta += -c d(v . grad_x E)/dtheta, by reverse mode through both passes (silu'' enters; relu'' = 0);
- the weight gradients of all steps are one matmul per layer at the end (the steps' factors stacked).

Same values and parameter gradients as autograd to float32 rounding (tests/test_nae.py); the random numbers
are drawn in the same order. `dense_layers` says whether a model qualifies; others keep autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["dense_layers", "langevin_chain", "latent_langevin"]

#: [(weight, bias, activation after it: 'silu', 'relu' or None)]
Layers = list[tuple[torch.Tensor, torch.Tensor, str | None]]
_ACTIVATIONS = {nn.SiLU: "silu", nn.ReLU: "relu"}


def dense_layers(model: nn.Module) -> Layers | None:
    """[(weight, bias, activation)] of an encoder/decoder MLP of Linear and SiLU / ReLU modules, else None."""
    encoder, decoder = getattr(model, "encoder", None), getattr(model, "decoder", None)
    if not isinstance(encoder, nn.Sequential) or not isinstance(decoder, nn.Sequential):
        return None
    layers: list[list] = []
    for module in (*encoder, *decoder):
        if isinstance(module, nn.Linear) and module.bias is not None:
            layers.append([module.weight, module.bias, None])
        elif type(module) in _ACTIVATIONS and layers and layers[-1][2] is None:
            layers[-1][2] = _ACTIVATIONS[type(module)]
        else:
            return None
    return [(w, b, act) for w, b, act in layers]


def langevin_chain(layers: Layers, x: torch.Tensor, noise: list[torch.Tensor], coef: float,
                   lower: torch.Tensor, upper: torch.Tensor, differentiable: bool) -> torch.Tensor:
    """x after len(noise) steps x <- clamp(x - coef grad_x E(x) + eta_t, lower, upper) (eta_t = noise[t],
    already scaled); with `differentiable`, the result carries the gradient to the layers' parameters."""
    params = [p for w, b, _ in layers for p in (w, b)]
    acts = tuple(act for _, _, act in layers)
    if differentiable and torch.is_grad_enabled():
        return _Chain.apply(x.detach(), torch.stack(noise), coef, lower, upper, acts, *params)
    with torch.no_grad():
        x = x.detach()
        for eta in noise:
            x = torch.clamp(x - coef * _energy_grad(params, acts, x) + eta, lower, upper)
        return x


def _energy_grad(params: list[torch.Tensor], acts: tuple[str | None, ...], x: torch.Tensor) -> torch.Tensor:
    """grad_x of sum_rows E(x): the forward pass, then the backward pass to the input."""
    h, pre = x, []
    for layer, act in enumerate(acts):
        pre.append(torch.addmm(params[2 * layer + 1], h, params[2 * layer].t()))
        h = _silu(pre[-1]) if act == "silu" else torch.relu(pre[-1]) if act == "relu" else pre[-1]
    scale = 2.0 / x.shape[1]
    r = x - h
    g = r * -scale
    for layer in reversed(range(len(acts))):
        if acts[layer] == "silu":
            g = _silu_backward(g, pre[layer])
        elif acts[layer] == "relu":
            g = g * (pre[layer] > 0)
        g = g @ params[2 * layer]
    return torch.add(g, r, alpha=scale)


_silu = torch.nn.functional.silu
_silu_backward = torch.ops.aten.silu_backward  # (g, a) -> g silu'(a), one kernel


def _silu_second(a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """silu''(a) = s (1 - s) (2 + a (1 - 2 s)) from s = sigmoid(a)."""
    return torch.addcmul(s, s, s, value=-1.0).mul_(torch.add(a, a * s, alpha=-2.0).add_(2.0))


class _Tape:
    """What the backward pass of the chain needs: per step the layer inputs h_(l-1), delta_l, the SiLU
    layers' (a, sigmoid(a), silu'(a), g) and the clamp masks."""

    def __init__(self, h_in, delta, silu_saved, inside):
        self.h_in, self.delta, self.silu_saved, self.inside = h_in, delta, silu_saved, inside


def _chain_forward(x, noise, coef, lower, upper, acts, weights, biases) -> tuple[torch.Tensor, _Tape]:
    n_layers = len(acts)
    steps, batch = noise.shape[:2]
    h_in = [x.new_empty(steps, batch, w.shape[1]) for w in weights]  # h_(l-1) at every step
    delta = [x.new_empty(steps, batch, w.shape[0]) for w in weights]  # delta_l at every step
    silu_saved, inside = [], []
    scale = 2.0 / x.shape[1]
    h_in[0][0] = x
    for t in range(steps):
        h = h_in[0][t]
        saved: list[Any] = [None] * n_layers
        for layer in range(n_layers):  # forward pass
            out = h_in[layer + 1][t] if layer + 1 < n_layers else None
            if acts[layer] == "silu":
                a = torch.addmm(biases[layer], h, weights[layer].t())
                s = torch.sigmoid(a)
                h = torch.mul(a, s, out=out)
                saved[layer] = (a, s)
            elif acts[layer] == "relu":
                a = torch.addmm(biases[layer], h, weights[layer].t())
                h = torch.clamp_min(a, 0.0, out=out)
                saved[layer] = (a, None)
            else:
                h = torch.addmm(biases[layer], h, weights[layer].t(), out=out)
        r = h_in[0][t] - h
        g = r * -scale
        for layer in reversed(range(n_layers)):  # backward pass
            if acts[layer]:
                a, s = saved[layer]
                if s is None:  # relu'(a) = [a > 0] (autograd's convention at 0)
                    ds = (a > 0).to(a.dtype)
                else:
                    ds = torch.addcmul(s, s, a - a * s)  # silu'(a) = s (1 + a (1 - s))
                saved[layer] = (a, s, ds, g)
                g = torch.mul(g, ds, out=delta[layer][t]) @ weights[layer]
            else:
                g = delta[layer][t].copy_(g) @ weights[layer]
        pre = torch.add(h_in[0][t], torch.add(g, r, alpha=scale), alpha=-coef).add_(noise[t])
        inside.append(((pre >= lower) & (pre <= upper)).to(pre.dtype))  # where clamp passes the gradient
        x = torch.clamp(pre, lower, upper, out=h_in[0][t + 1] if t + 1 < steps else None)
        silu_saved.append(saved)
    return x, _Tape(h_in, delta, silu_saved, inside)


def _chain_backward(tape: _Tape, grad_out, coef, acts, weights) -> list[torch.Tensor]:
    """The parameter gradients [dW_1, db_1, ...] of the chain for dL/dx_T = grad_out."""
    n_layers = len(acts)
    g_bar_in = [torch.empty_like(h) for h in tape.h_in]  # g_bar_(l-1) at every step
    a_bar = [torch.empty_like(d) for d in tape.delta]  # a_bar_l at every step
    scale = 2.0 / grad_out.shape[1]
    u = grad_out
    for t in reversed(range(len(tape.inside))):
        saved = tape.silu_saved[t]
        v = u * tape.inside[t]
        g_bar = torch.mul(v, -coef, out=g_bar_in[0][t])  # dL/dG_t, G_t = grad_x E(x_t)
        r_bar = g_bar * scale  # G = (2/d) r + g_0
        second: list[Any] = [None] * n_layers
        for layer in range(n_layers):  # reverse of the backward pass: g_(l-1) = delta_l W_l, delta_l = g_l silu'
            delta_bar = g_bar @ weights[layer].t()
            out = g_bar_in[layer + 1][t] if layer + 1 < n_layers else None
            if acts[layer]:
                a, s, ds, g = saved[layer]
                second[layer] = None if s is None else delta_bar * g * _silu_second(a, s)  # relu'' = 0
                g_bar = torch.mul(delta_bar, ds, out=out)
            else:
                g_bar = delta_bar if out is None else out.copy_(delta_bar)
        r_bar.sub_(g_bar, alpha=scale)  # g_L = -(2/d) r
        h_bar = -r_bar  # r = x - h_L
        for layer in reversed(range(n_layers)):  # reverse of the forward pass
            if second[layer] is None and acts[layer]:
                ab = torch.mul(h_bar, saved[layer][2], out=a_bar[layer][t])
            elif acts[layer]:
                ab = torch.addcmul(second[layer], h_bar, saved[layer][2], out=a_bar[layer][t])
            else:
                ab = a_bar[layer][t].copy_(h_bar)
            h_bar = ab @ weights[layer]
        u = (v + r_bar).add_(h_bar)
    grads = []
    for h, d, g_b, a_b in zip(tape.h_in, tape.delta, g_bar_in, a_bar, strict=True):
        left_f, right_b, left_b, right_f = (z.flatten(0, 1) for z in (d, g_b, a_b, h))
        grads += [torch.addmm(left_f.t() @ right_b, left_b.t(), right_f), left_b.sum(0)]
    return grads


class _Chain(torch.autograd.Function):
    """The differentiable chain, forward and backward written out.

    dL/dW_l sums delta_l^T g_bar_(l-1) + a_bar_l^T h_(l-1) over the steps; the four factors are written
    (``out=``) into (steps, batch, width) buffers as they are computed, and multiplied once at the end.
    """

    @staticmethod
    def forward(ctx, x, noise, coef, lower, upper, acts, *params):
        x, ctx.tape = _chain_forward(x, noise, coef, lower, upper, acts, params[0::2], params[1::2])
        ctx.coef, ctx.acts = coef, acts
        ctx.save_for_backward(*params)
        return x

    @staticmethod
    def backward(ctx, grad_out):
        grads = _chain_backward(ctx.tape, grad_out, ctx.coef, ctx.acts, ctx.saved_tensors[0::2])
        return (None, None, None, None, None, None, *grads)


def latent_langevin(energy: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, noise: list[torch.Tensor],
                    coef: float, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """z after len(noise) steps z <- clamp(z - coef grad_z E(z) + eta_t, lower, upper), detached: the NAE's
    on-manifold initialization (2105.05735, section 4), `energy(z)` = E(decoder(z)) per row."""
    z = z.detach()
    for eta in noise:
        z = z.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(energy(z).sum(), z)
        z = torch.clamp(z.detach() - coef * grad + eta, lower, upper)
    return z.detach()
