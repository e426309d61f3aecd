"""Langevin chains on a dense autoencoder's energy, with the gradient and its backward written out.

The NAE / WNAE sampler (2105.05735, CMS-PAS-MLG-24-002) steps x <- clamp(x - c grad_x E(x) + noise eta, box),
c = step_size / T, on the energy E(x) = mean_k (x_k - f(x)_k)^2 of an MLP autoencoder f (Linear layers, SiLU
activations: `autoencoder.DenseCoder`); the WNAE loss is differentiated through every step. Autograd does
that with `create_graph`: a graph of the gradient's graph (~100 small operations a step) and a double
backward through it. Here both passes are written out for the MLP:

- forward pass a_l = h_(l-1) W_l^T + b_l, h_l = silu(a_l); backward pass g_L = -(2/d) r (r = x - f(x)),
  delta_l = g_l silu'(a_l), g_(l-1) = delta_l W_l; grad_x E = (2/d) r + g_0;
- the chain's backward: with v = dL/dx_(t+1) inside the box, dL/dx_t = v - c H v and
  dL/dtheta += -c d(v . grad_x E)/dtheta, by reverse mode through both passes (silu'' enters);
- the weight gradients of all steps are one matmul per layer at the end (the steps' factors stacked).

Same values and parameter gradients as autograd to float32 rounding (tests/test_nae.py); the random numbers
are drawn in the same order. `dense_layers` says whether a model qualifies; others keep autograd.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["dense_layers", "langevin_chain"]

Layers = list[tuple[torch.Tensor, torch.Tensor, bool]]


def dense_layers(model: nn.Module) -> Layers | None:
    """[(weight, bias, silu after it)] of an encoder/decoder MLP of Linear and SiLU modules, else None."""
    encoder, decoder = getattr(model, "encoder", None), getattr(model, "decoder", None)
    if not isinstance(encoder, nn.Sequential) or not isinstance(decoder, nn.Sequential):
        return None
    layers: list[list] = []
    for module in (*encoder, *decoder):
        if isinstance(module, nn.Linear) and module.bias is not None:
            layers.append([module.weight, module.bias, False])
        elif isinstance(module, nn.SiLU) and layers and not layers[-1][2]:
            layers[-1][2] = True
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
            x = torch.clamp(x - coef * _energy_grad(params, acts, x, None) + eta, lower, upper)
        return x


def _energy_grad(params: list[torch.Tensor], acts: tuple[bool, ...], x: torch.Tensor,
                 saved: list | None) -> torch.Tensor:
    """grad_x of sum_rows E(x); with `saved`, appends (inputs, pre-activations, output gradients, deltas)."""
    h, inputs, pre = x, [], []
    for layer, act in enumerate(acts):
        a = torch.addmm(params[2 * layer + 1], h, params[2 * layer].t())
        inputs.append(h)
        pre.append(a)
        h = _silu(a) if act else a
    scale = 2.0 / x.shape[1]
    r = x - h
    g = r * -scale
    grads, deltas = [None] * len(acts), [None] * len(acts)
    for layer in reversed(range(len(acts))):
        delta = _silu_backward(g, pre[layer]) if acts[layer] else g  # g silu'(a)
        grads[layer], deltas[layer] = g, delta
        g = delta @ params[2 * layer]
    if saved is not None:
        saved.append((inputs, pre, grads, deltas))
    return torch.add(g, r, alpha=scale)


_silu = torch.nn.functional.silu
_silu_backward = torch.ops.aten.silu_backward  # (g, a) -> g silu'(a), one kernel


def _silu_second(a: torch.Tensor) -> torch.Tensor:
    """silu''(a) = s (1 - s) (2 + a (1 - 2 s)), s = sigmoid(a)."""
    s = torch.sigmoid(a)
    return torch.addcmul(s, s, s, value=-1.0).mul_(torch.addcmul(a, a, s, value=-2.0).add_(2.0))


class _Chain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, noise, coef, lower, upper, acts, *params):
        saved, inside = [], []
        for eta in noise:
            pre = torch.add(x, _energy_grad(params, acts, x, saved), alpha=-coef).add_(eta)
            inside.append(((pre >= lower) & (pre <= upper)).to(pre.dtype))  # where clamp passes the gradient
            x = torch.clamp(pre, lower, upper)
        ctx.coef, ctx.acts, ctx.saved, ctx.inside = coef, acts, saved, inside
        ctx.save_for_backward(*params)
        return x

    @staticmethod
    def backward(ctx, grad_out):
        params, acts, coef = ctx.saved_tensors, ctx.acts, ctx.coef
        n_layers = len(acts)
        grads = [torch.zeros_like(p) for p in params]
        u = grad_out
        for (inputs, pre, g_out, deltas), inside in zip(reversed(ctx.saved), reversed(ctx.inside), strict=True):
            v = u * inside
            scale = 2.0 / v.shape[1]
            g_bar = v * -coef  # dL/dG of this step, G = grad_x E(x_t); the reverse of the backward pass:
            r_bar = g_bar * scale  # from G = (2/d) r + g_0
            a_bar_ds = [None] * n_layers
            for layer in range(n_layers):  # g_(l-1) = delta_l W_l, delta_l = g_l silu'(a_l)
                grads[2 * layer].addmm_(deltas[layer].t(), g_bar)
                delta_bar = g_bar @ params[2 * layer].t()
                if acts[layer]:
                    a_bar_ds[layer] = delta_bar * g_out[layer] * _silu_second(pre[layer])
                    g_bar = _silu_backward(delta_bar, pre[layer])
                else:
                    g_bar = delta_bar
            r_bar.sub_(g_bar, alpha=scale)  # g_L = -(2/d) r
            h_bar = -r_bar  # r = x - h_L; the reverse of the forward pass:
            for layer in reversed(range(n_layers)):
                a_bar = _silu_backward(h_bar, pre[layer]).add_(a_bar_ds[layer]) if acts[layer] else h_bar
                grads[2 * layer + 1].add_(a_bar.sum(0))
                grads[2 * layer].addmm_(a_bar.t(), inputs[layer])
                h_bar = a_bar @ params[2 * layer]
            u = (v + r_bar).add_(h_bar)
        return (None, None, None, None, None, None, *grads)
