"""The JetCLR constituent encoder: a permutation-invariant transformer with IRC-safe pT-weighted sum pooling.

References: JetCLR (2108.04253), AnomCLR (2301.04660), DarkCLR (2312.03067). No positional encoding (the
constituents are a set); zero padding is masked out of the attention (`src_key_padding_mask`) and of the
pooling, so permuting constituents or appending masked padding leaves the representation unchanged.

pT in the attention (JetCLR's "continuous mask", public code `Transformer.make_continuous_mask`): every
attention logit q_i.k_j gets + b log pT_j of the *key* constituent j, so the attention weight of j is
proportional to pT_j^b exp(q_i.k_j); JetCLR uses b = 0.5. With b = 1 and per-constituent inputs that do not
depend on pT (`pt_input="none"`), a collinear split (two pieces of pT z pT_j and (1 - z) pT_j at the parent's
position) leaves every attention output, and hence the pT-weighted pooled representation, exactly unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PT_INPUTS", "ConstituentTransformer", "attention_key_bias", "biased_encoder", "biased_self_attention",
           "constituent_features", "jet_axis", "n_input_features"]

PT_INPUTS = ("log", "fraction", "none")


def jet_axis(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eta, phi) of the pT-weighted jet axis, (B,) each, from raw (B, P, 5) = (pT, eta, phi, E, mask)."""
    pt = raw[..., 0] * raw[..., 4]
    norm = pt.sum(1).clamp_min(1e-12)
    eta = (pt * raw[..., 1]).sum(1) / norm
    phi = torch.atan2((pt * torch.sin(raw[..., 2])).sum(1), (pt * torch.cos(raw[..., 2])).sum(1))
    return eta, phi


def constituent_features(
    raw: torch.Tensor, axis: tuple[torch.Tensor, torch.Tensor] | None = None, pt_input: str = "log",
    pt_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-constituent inputs (B, P, 3), the mask (B, P) and the pooling weights pT / sum pT (B, P).

    Inputs: the pT term ('log': log(pT / pt_scale), one global scale, so the jet pT stays visible;
    'fraction': pT / jet pT; 'none': no pT column, inputs (B, P, 2), pT enters only through the attention
    bias and the pooling weights), eta - eta_axis and phi - phi_axis wrapped to (-pi, pi]. `axis` defaults to the
    jet's own axis; training passes the un-augmented jet's axis so translated views are off-centre (JetCLR).
    """
    mask = raw[..., 4] > 0.5
    pt = torch.where(mask, raw[..., 0], torch.zeros_like(raw[..., 0]))
    eta_c, phi_c = jet_axis(raw) if axis is None else axis
    total = pt.sum(1, keepdim=True).clamp_min(1e-12)
    if pt_input == "log":
        p = torch.log(pt.clamp_min(1e-6) / pt_scale)
    elif pt_input == "fraction":
        p = pt / total
    elif pt_input != "none":
        raise ValueError(f"pt_input must be one of {PT_INPUTS}, got {pt_input!r}")
    deta = raw[..., 1] - eta_c[:, None]
    dphi = torch.remainder(raw[..., 2] - phi_c[:, None] + math.pi, 2 * math.pi) - math.pi
    columns = [deta, dphi] if pt_input == "none" else [p, deta, dphi]
    x = torch.stack(columns, -1) * mask[..., None]
    return x, mask, pt / total


def n_input_features(pt_input: str) -> int:
    """Per-constituent input columns of `constituent_features` for a `pt_input` choice."""
    return 2 if pt_input == "none" else 3


def attention_key_bias(mask: torch.Tensor, weight: torch.Tensor, pt_bias: float) -> torch.Tensor:
    """(B, P) float key-padding mask: pt_bias * log(pT_j / sum pT) for real keys, -inf for padding.

    Added to every attention logit of key j (the per-jet constant log sum pT cancels in the softmax, so this
    is JetCLR's 0.5 log pT for pt_bias = 0.5). A jet without constituents keeps its first slot (weight 0) open.
    """
    pad = ~mask
    pad = torch.cat([pad[:, :1] & mask.any(1, keepdim=True), pad[:, 1:]], 1)  # no in-place op: ONNX
    bias = pt_bias * torch.log(weight.clamp_min(1e-30))
    return bias.masked_fill(pad, float("-inf"))


def biased_self_attention(attn: nn.MultiheadAttention, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
    """Multi-head self-attention of (B, P, D) `x` with `key_bias` (B, P) added to every logit of key j.

    The math of `nn.MultiheadAttention` with a float key-padding mask, written out with its parameters: torch's
    fused inference path returns NaN for float masks (torch 2.13), so biased attention never goes through it.
    """
    b, p, d = x.shape
    h = attn.num_heads
    q, k, v = (t.reshape(b, p, h, d // h).transpose(1, 2)
               for t in F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1))
    logits = q @ k.transpose(-2, -1) / math.sqrt(d // h) + key_bias[:, None, None, :]
    weights = F.dropout(torch.softmax(logits, -1), attn.dropout, attn.training)
    return attn.out_proj((weights @ v).transpose(1, 2).reshape(b, p, d))


def biased_encoder(encoder: nn.TransformerEncoder, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
    """`encoder` (pre-norm `nn.TransformerEncoderLayer`s) applied with `biased_self_attention`."""
    for layer in encoder.layers:
        x = x + layer.dropout1(biased_self_attention(layer.self_attn, layer.norm1(x), key_bias))
        y = layer.norm2(x)
        x = x + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(y)))))
    return x if encoder.norm is None else encoder.norm(x)


class ConstituentTransformer(nn.Module):
    """Embedding -> transformer encoder (no positional encoding) -> pT-weighted sum -> projection head.

    `representation` is the pooled (B, dim) vector before the head (the JetCLR representation);
    `forward` returns the (B, proj_dim) projection that enters the contrastive loss. `pt_bias` adds
    pt_bias * log pT of the key constituent to every attention logit (JetCLR: 0.5; 0 = plain masking).
    """

    def __init__(self, n_features: int = 3, dim: int = 64, n_layers: int = 2, n_heads: int = 4,
                 proj_dim: int = 32, dropout: float = 0.1, pt_bias: float = 0.0):
        super().__init__()
        self.pt_bias = float(pt_bias)
        self.embed = nn.Sequential(nn.Linear(n_features, dim), nn.ReLU(), nn.Linear(dim, dim))
        layer = nn.TransformerEncoderLayer(dim, n_heads, dim_feedforward=2 * dim, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, dim)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, proj_dim))

    def representation(self, x: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """(B, dim): sum over constituents of weight * per-constituent output (IRC-safe pooling)."""
        if self.pt_bias == 0.0:
            pad = ~mask  # a jet without constituents attends to one (ignored) slot, not to nothing (no in-place op)
            key_mask = torch.cat([pad[:, :1] & mask.any(1, keepdim=True), pad[:, 1:]], 1)
            h = self.encoder(self.embed(x), src_key_padding_mask=key_mask)
        else:
            h = biased_encoder(self.encoder, self.embed(x), attention_key_bias(mask, weight, self.pt_bias))
        return self.out((h * weight[..., None]).sum(1))

    def head_hidden(self, z: torch.Tensor) -> torch.Tensor:
        """(B, dim): the first layer of the projection head (the layer JetCLR's public code probes by default)."""
        return self.head[1](self.head[0](z))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self.head(self.representation(x, mask, weight))
