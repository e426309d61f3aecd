"""Contrastive representations of jets for anomaly detection: JetCLR, AnomCLR and the DarkCLR score.

JetCLR (2108.04253): a transformer on constituents learns a representation invariant to rotations,
translations, collinear splittings and soft smearing with the NT-Xent loss (two augmented views of a jet are
pulled together, the other jets of the batch pushed away). AnomCLR (2301.04660): an anomalous augmentation
(constituent drop, pT reweighting) is pushed away from the jet. DarkCLR (2312.03067, reference code):
AnomCLR+ loss plus a small penalty on the norm of the background jets' projections, so the norm of the
projection is an anomaly score. Here scores are that norm, a Mahalanobis distance to the training
representations, or the energy of a normalized autoencoder trained on the representations.

Reference settings (JetCLR): 50 constituents, 4 layers, 4 heads, model dim 1000, batch 128, Adam 5e-5,
temperature 0.1; set them with ``JetCLR(dim=1000, n_layers=4, lr=5e-5)`` (the defaults are CPU-sized).
Followed from JetCLR's public code (github.com/bmdillon/JetCLR, `run_jetclr.py`, `transformer.py`): the
attention logits carry + 0.5 log pT of the key constituent (`pt_attention_bias`), and only one view is
augmented beyond the symmetries: view 1 is rotated and translated, view 2 rotated, collinearly split
(two passes filling the zero padding), smeared and translated (`augment_views="one"`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from jetad.data.sample import JetSample, SchemaError
from jetad.detectors.base import Progress, TorchDetector, register
from jetad.detectors.clr_encoder import (
    PT_INPUTS,
    ConstituentTransformer,
    constituent_features,
    jet_axis,
    n_input_features,
)
from jetad.detectors.inputs import InputSpec
from jetad.physics.augment import (
    collinear_split,
    compose,
    drop_constituents,
    rotate,
    smear_soft,
    translate,
)

if TYPE_CHECKING:
    from jetad.detectors.nae import NormalizedAutoencoder

__all__ = ["AUGMENT_VIEWS", "REPRESENTATION_LAYERS", "SCORE_KINDS", "AnomCLR", "JetCLR", "anomclr_loss", "nt_xent",
           "pt_reweight"]

SCORE_KINDS = ("norm", "mahalanobis", "nae")
#: 'one': JetCLR's scheme (symmetries on both views, collinear splits and smearing on the second only);
#: 'both': every physical augmentation on both views.
AUGMENT_VIEWS = ("one", "both")
#: 'pooled': the transformer's pT-weighted sum (after one linear map), 'head1': the first projection-head layer
#: (the layer JetCLR's public code probes by default), 'projection': the head's output (enters the loss).
REPRESENTATION_LAYERS = ("pooled", "head1", "projection")


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent (SimCLR, JetCLR eq. 2): -log exp(s(z_i, z_i')/T) / sum_{k != i} exp(s(z_i, z_k)/T), cosine s,
    averaged over the 2B views; the sum runs over the other 2B - 1 views (the positive included)."""
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


def anomclr_loss(z1: torch.Tensor, z2: torch.Tensor, z_anom: torch.Tensor, temperature: float = 0.1,
                 plus: bool = False) -> torch.Tensor:
    """AnomCLR (2301.04660): -log exp((s(z_i, z_i') - s(z_i, z_i*))/T) / sum_{k not i, i'} exp(s(z_i, z_k)/T).

    z_i* is the anomalous view of jet i; the denominator holds the other jets' views only. AnomCLR+
    (`plus`): no other-jet negatives, the loss is -(s(z_i, z_i') - s(z_i, z_i*))/T (used for batches of one).
    """
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    pos = torch.cat([torch.diagonal(sim, n), torch.diagonal(sim, -n)])
    anom = (z[:n] * F.normalize(z_anom, dim=1)).sum(1) / temperature
    margin = pos - torch.cat([anom, anom])
    if plus or n < 2:
        return -margin.mean()
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    not_neg = eye | eye.roll(n, dims=1)
    return (torch.logsumexp(sim.masked_fill(not_neg, float("-inf")), dim=1) - margin).mean()


def pt_reweight(constituents: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                power: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """AnomCLR anomalous augmentation: pT -> pT^power, rescaled to the jet's sum pT (E scaled alike)."""
    c = np.where(mask[..., None], np.asarray(constituents, dtype=np.float64), 0.0)
    new = c[..., 0] ** power
    new *= c[..., 0].sum(1, keepdims=True) / np.maximum(new.sum(1, keepdims=True), 1e-300)
    ratio = np.divide(new, c[..., 0], out=np.zeros_like(new), where=c[..., 0] > 0)
    c[..., 0], c[..., 3] = new, c[..., 3] * ratio
    return c.astype(np.float32), mask.copy()


@register
class JetCLR(TorchDetector):
    """JetCLR (2108.04253): transformer representation of constituents, NT-Xent on two augmented views.

    Views: rotation, translation (`translation_width`), collinear splitting, soft smearing
    (`smear_strength`, pT clipped at `smear_pt_clip` GeV), applied per batch with a numpy generator seeded
    from `seed` (checkpointed for resume). Validation loss with a fixed generator is the selection criterion.

    Arguments:
        n_constituents: leading constituents per jet; dim, n_layers, n_heads, proj_dim, dropout: the encoder.
        pt_input: 'log' (log pT over one global scale, the training mean jet pT), 'fraction' (pT / jet pT) or
            'none' (no pT input column: pT enters only through the attention bias and the pooling weights).
        pt_attention_bias: b in the attention logits q_i.k_j + b log pT_j (JetCLR: 0.5; 0: no pT in the
            attention; 1 with pt_input='none': exactly collinear safe).
        augment_views: 'one' (JetCLR: both views rotated and translated, only the second split and smeared)
            or 'both' (every physical augmentation on both views; the behaviour before JetCLR's scheme).
        temperature: NT-Xent temperature.
        score_kind: 'mahalanobis' (default: distance to the background representations, shrinkage
            covariance: NT-Xent constrains directions only, so without a norm penalty the norm carries
            little), 'norm' (||g(z)||, the projection g of DarkCLR) or 'nae' (a small NormalizedAutoencoder
            on z, `nae_epochs` epochs).
        norm_penalty: weight of mean ||g(z)|| of the training views in the loss (DarkCLR: 1e-3).
    """

    name: ClassVar[str] = "clr"
    params_before: ClassVar[dict[str, Any]] = {"pt_attention_bias": 0.0, "augment_views": "both"}
    model_: ConstituentTransformer
    nae_: NormalizedAutoencoder | None

    def __init__(self, n_constituents: int = 50, dim: int = 64, n_layers: int = 2, n_heads: int = 4,
                 proj_dim: int = 32, dropout: float = 0.1, pt_input: str = "log", pt_attention_bias: float = 0.5,
                 augment_views: str = "one", temperature: float = 0.1,
                 translation_width: float = 1.0, smear_strength: float = 0.1, smear_pt_clip: float = 0.1,
                 score_kind: str = "mahalanobis", nae_epochs: int = 20, norm_penalty: float = 0.0,
                 epochs: int = 30, batch_size: int = 128, lr: float = 5e-4, **kwargs: Any):
        super().__init__(epochs=epochs, batch_size=batch_size, lr=lr, **kwargs)
        if score_kind not in SCORE_KINDS:
            raise ValueError(f"score_kind must be one of {SCORE_KINDS}, got {score_kind!r}")
        if pt_input not in PT_INPUTS:
            raise ValueError(f"pt_input must be one of {PT_INPUTS}, got {pt_input!r}")
        if augment_views not in AUGMENT_VIEWS:
            raise ValueError(f"augment_views must be one of {AUGMENT_VIEWS}, got {augment_views!r}")
        if isinstance(pt_attention_bias, bool) or not isinstance(pt_attention_bias, int | float) or not (
                math.isfinite(pt_attention_bias) and pt_attention_bias >= 0):
            raise ValueError(f"pt_attention_bias must be a finite number >= 0 (JetCLR: 0.5), got {pt_attention_bias!r}")
        self.pt_attention_bias, self.augment_views = pt_attention_bias, augment_views
        self.n_constituents, self.dim, self.n_layers, self.n_heads = n_constituents, dim, n_layers, n_heads
        self.proj_dim, self.dropout, self.pt_input, self.temperature = proj_dim, dropout, pt_input, temperature
        self.translation_width, self.smear_strength, self.smear_pt_clip = (translation_width, smear_strength,
                                                                           smear_pt_clip)
        self.score_kind, self.nae_epochs, self.norm_penalty = score_kind, nae_epochs, norm_penalty

    def default_inputs(self) -> dict[str, Any]:
        return {"kind": "constituents", "n_constituents": self.n_constituents}

    # -- inputs: raw constituents, augmented per batch -----------------------------------------------
    def _fit_inputs(self, train: JetSample) -> None:
        kind = self.input_spec().kind
        if kind != "constituents":
            raise ValueError(f"{self.name} reads constituents; inputs kind must be 'constituents', not {kind!r}")
        super()._fit_inputs(train)
        self.pt_scale_ = float(np.mean(train.jets[:, 0]))

    def _model_inputs(self, sample: JetSample, source: str) -> np.ndarray:
        """(N, n, 5): leading-n constituents (pT, eta, phi, E, mask), pT-sorted here so order never matters."""
        if sample.n_constituents == 0:
            raise SchemaError(f"{source}: constituents were not loaded; {self.name} needs them")
        n = self.spec_.n_constituents
        c, m = sample.constituents, sample.mask
        order = np.argsort(np.where(m, -c[..., 0], np.inf), axis=1, kind="stable")[:, :n]
        c, m = np.take_along_axis(c, order[..., None], 1), np.take_along_axis(m, order, 1)
        x = np.concatenate([c * m[..., None], m[..., None]], -1)
        return np.pad(x, [(0, 0), (0, n - x.shape[1]), (0, 0)]).astype(np.float32)

    def build_model(self, input_shape: tuple[int, ...]) -> ConstituentTransformer:
        return ConstituentTransformer(n_input_features(self.pt_input), self.dim, self.n_layers, self.n_heads,
                                      self.proj_dim, self.dropout, pt_bias=self.pt_attention_bias)

    def symmetry_augmentation(self):
        """The exact symmetries JetCLR applies to both views: a rotation and a translation."""
        return compose(rotate, partial(translate, width=self.translation_width))

    def physical_augmentation(self):
        """JetCLR's symmetry augmentations, composed from `jetad.physics.augment`."""
        return compose(rotate, partial(translate, width=self.translation_width), collinear_split,
                       partial(smear_soft, strength=self.smear_strength, pt_clip=self.smear_pt_clip))

    def view_augmentations(self):
        """(first view, second view) augmentations for `augment_views`.

        'one' follows JetCLR's public code: view 1 = rotation + translation; view 2 = rotation + translation +
        two passes of collinear splitting into the zero padding + soft smearing. 'both': `physical_augmentation`
        (one splitting pass) on each view.
        """
        if self.augment_views == "both":
            return self.physical_augmentation(), self.physical_augmentation()
        smear = partial(smear_soft, strength=self.smear_strength, pt_clip=self.smear_pt_clip)
        return self.symmetry_augmentation(), compose(self.symmetry_augmentation(), collinear_split, collinear_split,
                                                     smear)

    def _augmented(self, raw: torch.Tensor, rng: np.random.Generator, augmentation) -> torch.Tensor:
        x = raw.detach().cpu().numpy()
        c, m = augmentation(x[..., :4], x[..., 4] > 0.5, rng)
        return torch.as_tensor(np.concatenate([c, m[..., None]], -1), dtype=raw.dtype, device=raw.device)

    def _project(self, raw: torch.Tensor, axis=None, layer: str = "projection") -> torch.Tensor:
        x, mask, w = constituent_features(raw, axis, self.pt_input, self.pt_scale_)
        if layer == "projection":
            return self.model_(x, mask, w)
        z = self.model_.representation(x, mask, w)
        return self.model_.head_hidden(z) if layer == "head1" else z

    def _contrastive(self, batch: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
        axis, (aug1, aug2) = jet_axis(batch), self.view_augmentations()
        z1 = self._project(self._augmented(batch, rng, aug1), axis)
        z2 = self._project(self._augmented(batch, rng, aug2), axis)
        loss = nt_xent(z1, z2, self.temperature) + self.norm_penalty * z1.norm(dim=1).mean()
        return loss, {"s_pos": float(F.cosine_similarity(z1, z2).mean().detach())}

    def loss(self, batch):
        return self._contrastive(batch, self.rng_)

    def criterion(self, x_val) -> float:
        """Background validation contrastive loss, augmentations from a fixed generator (epochs comparable)."""
        rng, total = np.random.default_rng(self.seed + 7919), 0.0
        with torch.no_grad():
            for i in range(0, len(x_val), self.batch_size):
                batch = x_val[i:i + self.batch_size]
                total += float(self._contrastive(batch, rng)[0]) * len(batch)
        return total / len(x_val)

    def extra_state(self) -> Any:
        return {"rng": self.rng_.bit_generator.state}

    def load_extra_state(self, state: Any) -> None:
        self.rng_.bit_generator.state = state["rng"]

    # -- fit, representation, scores -----------------------------------------------------------------
    def fit(self, train: JetSample, val: JetSample | None = None, progress: Progress | None = None,
            monitor: Callable[[Any], dict[str, float]] | None = None) -> JetCLR:
        """Train the encoder on background, then fit the representation scores on the training split."""
        self.rng_ = np.random.default_rng(self.seed)
        super().fit(train, val, monitor=monitor, progress=progress)
        from sklearn.covariance import LedoitWolf

        fit_split = self._split(train, val)[0]
        z = self.representation(fit_split)
        self.mean_, self.precision_ = z.mean(0), LedoitWolf().fit(z).precision_
        self.nae_ = None
        if self.score_kind == "nae":
            self.fit_nae(fit_split)
        return self

    def representation(self, sample: JetSample, batch_size: int = 2048, layer: str = "pooled") -> np.ndarray:
        """(N, dim) representation: `layer` in REPRESENTATION_LAYERS; 'pooled' (default) is the pre-head JetCLR
        representation that the scores use, 'head1' the layer JetCLR's public code probes by default."""
        if layer not in REPRESENTATION_LAYERS:
            raise ValueError(f"layer must be one of {REPRESENTATION_LAYERS}, got {layer!r}")
        return self._represent(torch.as_tensor(self._inputs_for(sample, sample.describe())), batch_size, layer)

    def _represent(self, x: torch.Tensor, batch_size: int = 2048, layer: str = "pooled") -> np.ndarray:
        self.model_.eval()
        with torch.no_grad():
            out = [self._project(x[i:i + batch_size].to(self.device_), layer=layer)
                   for i in range(0, len(x), batch_size)]
        return torch.cat(out).cpu().numpy().astype(np.float64)

    def fit_nae(self, train: JetSample) -> JetCLR:
        """Train a small NormalizedAutoencoder (jetad 'nae') on the representations of background jets."""
        from jetad.detectors.nae import NormalizedAutoencoder

        z = _feature_sample(self.representation(train))
        nae = NormalizedAutoencoder(
            inputs={"kind": "features", "features": tuple(z.features), "scaling": "quantile"}, hidden=(32, 16),
            latent_dim=4, epochs=self.nae_epochs, patience=self.nae_epochs,
            pretrain_epochs=max(1, self.nae_epochs // 4), batch_size=128, buffer_size=2000, distance="sliced",
            seed=self.seed, device=self.device)
        self.nae_ = nae
        nae.fit(z)
        return self

    def scores(self, sample: JetSample, kinds: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Every available score kind (or `kinds`) from one pass of the encoder; higher = more anomalous."""
        x = torch.as_tensor(self._inputs_for(sample, sample.describe()))
        z = self._represent(x)
        kinds = kinds or tuple(k for k in SCORE_KINDS if k != "nae" or self.nae_ is not None)
        out = {}
        for kind in kinds:
            if kind == "norm":
                out[kind] = np.linalg.norm(self._represent(x, layer="projection"), axis=1)
            elif kind == "mahalanobis":
                d = z - self.mean_
                out[kind] = np.einsum("ij,jk,ik->i", d, self.precision_, d)
            elif kind == "nae":
                if self.nae_ is None:
                    raise RuntimeError(f"{self.name}: no NAE on the representation; call fit_nae(train) first")
                out[kind] = self.nae_.score(_feature_sample(z))
            else:
                raise ValueError(f"score kind must be one of {SCORE_KINDS}, got {kind!r}")
        return out

    def score(self, sample: JetSample, batch_size: int = 2048) -> np.ndarray:
        """The `score_kind` score per jet; higher = more anomalous."""
        return self.scores(sample, (self.score_kind,))[self.score_kind]

    def score_module(self) -> torch.nn.Module:
        """The ONNX-exportable score: raw constituents -> transformer -> Mahalanobis distance or ||g(z)||."""
        if self.score_kind == "nae":
            raise NotImplementedError(
                f"{self.name}: score_kind 'nae' scores the representation with a second detector behind its own "
                "quantile scaling (not expressible in one graph); export with score_kind 'mahalanobis' or 'norm'")
        return CLRScore(self)

    def invariance_report(self, sample: JetSample, rng: np.random.Generator) -> dict[str, float]:
        """Mean 1 - cos(z, z') between a jet's representation and that of an augmented copy (each augmentation
        on the model's inputs, as in training) or of a random other jet ('random_swap'). Translations are
        removed exactly at inference (jets are centred on their axis); collinear splits need zero padding."""
        x = torch.as_tensor(self._inputs_for(sample, sample.describe()))
        z = self._represent(x)
        augs = {"rotate": rotate, "translate": partial(translate, width=self.translation_width),
                "collinear_split": collinear_split,
                "smear_soft": partial(smear_soft, strength=self.smear_strength, pt_clip=self.smear_pt_clip),
                "all_physical": self.physical_augmentation(), "drop_constituents": drop_constituents}
        out = {k: _cos_change(z, self._represent(self._augmented(x, rng, f))) for k, f in augs.items()}
        out["random_swap"] = _cos_change(z, z[rng.permutation(len(z))])
        return out

    # -- persistence ---------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        nae = self.nae_
        return super()._get_state() | {
            "pt_scale": self.pt_scale_, "mean": self.mean_, "precision": self.precision_,
            "nae": None if nae is None else {"params": nae.get_params(), "spec": nae.spec_.to_dict(),
                                             "state": nae._get_state()}}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.pt_scale_, self.mean_, self.precision_ = state["pt_scale"], state["mean"], state["precision"]
        super()._set_state(state)
        self.nae_ = None
        if state["nae"] is not None:
            from jetad.detectors.nae import NormalizedAutoencoder

            self.nae_ = nae = NormalizedAutoencoder(**state["nae"]["params"])
            nae.spec_ = InputSpec.from_dict(state["nae"]["spec"])
            nae._set_state(state["nae"]["state"])


@register
class AnomCLR(JetCLR):
    """AnomCLR (2301.04660) in the DarkCLR setting (2312.03067): AnomCLR+ loss, norm penalty, norm score.

    Positive pairs: two physical views; each jet's anomalous view (the anomalous augmentation, then the
    physical ones) enters `anomclr_loss` and is pushed away. Default score 'norm' (DarkCLR): the loss fixes
    directions only, while `norm_penalty` shrinks the projections of the training (background) jets, so jets
    unlike them keep larger norms.

    Arguments:
        anomaly: 'drop' (constituents dropped with `p_drop`, pT rescaled back) or 'pt_reweight' (pT^`pt_power`).
        loss_kind: 'anomclr' (other jets as negatives too) or 'anomclr_plus' (anomalous views only).
        augment_views: as for JetCLR; default 'both' (the behaviour before JetCLR's one-view scheme was added;
            not compared with the AnomCLR/DarkCLR code). The encoder's `pt_attention_bias` is JetCLR's (0.5).
    """

    name: ClassVar[str] = "anomclr"

    def __init__(self, anomaly: str = "drop", p_drop: float = 0.3, pt_power: float = 1.5,
                 loss_kind: str = "anomclr_plus", score_kind: str = "norm", norm_penalty: float = 1e-3,
                 augment_views: str = "both", **kwargs: Any):
        super().__init__(score_kind=score_kind, norm_penalty=norm_penalty, augment_views=augment_views, **kwargs)
        if anomaly not in ("drop", "pt_reweight"):
            raise ValueError(f"anomaly must be 'drop' or 'pt_reweight', got {anomaly!r}")
        if loss_kind not in ("anomclr", "anomclr_plus"):
            raise ValueError(f"loss_kind must be 'anomclr' or 'anomclr_plus', got {loss_kind!r}")
        self.anomaly, self.p_drop, self.pt_power, self.loss_kind = anomaly, p_drop, pt_power, loss_kind

    def anomalous_augmentation(self):
        """The anomalous augmentation followed by the physical ones."""
        anom = (partial(drop_constituents, p_drop=self.p_drop) if self.anomaly == "drop"
                else partial(pt_reweight, power=self.pt_power))
        return compose(anom, self.physical_augmentation())

    def _contrastive(self, batch: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
        axis, (aug1, aug2) = jet_axis(batch), self.view_augmentations()
        z1 = self._project(self._augmented(batch, rng, aug1), axis)
        z2 = self._project(self._augmented(batch, rng, aug2), axis)
        za = self._project(self._augmented(batch, rng, self.anomalous_augmentation()), axis)
        loss = anomclr_loss(z1, z2, za, self.temperature, plus=self.loss_kind == "anomclr_plus")
        loss = loss + self.norm_penalty * z1.norm(dim=1).mean()
        with torch.no_grad():
            return loss, {"s_pos": float(F.cosine_similarity(z1, z2).mean()),
                          "s_anom": float(F.cosine_similarity(z1, za).mean())}


def _feature_sample(z: np.ndarray) -> JetSample:
    """Representations as the feature columns z0, z1, ... of a constituent-free JetSample (for the NAE)."""
    n = len(z)
    return JetSample(np.zeros((n, 0, 4)), np.zeros((n, 0), bool), np.zeros((n, 4)), np.zeros(n), np.ones(n),
                     features={f"z{i}": z[:, i].astype(np.float32) for i in range(z.shape[1])})


def _cos_change(a: np.ndarray, b: np.ndarray) -> float:
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return float(np.mean(1.0 - cos))


class CLRScore(torch.nn.Module):
    """JetCLR/AnomCLR: raw constituents (B, n, 5) -> transformer -> squared Mahalanobis distance or ||g(z)||."""

    mean: torch.Tensor  # (d,) buffer
    precision: torch.Tensor  # (d, d) buffer

    def __init__(self, det: JetCLR):
        super().__init__()
        self.model: ConstituentTransformer = det.model_
        self.kind, self.pt_input, self.pt_scale = det.score_kind, det.pt_input, float(det.pt_scale_)
        self.register_buffer("mean", torch.as_tensor(np.asarray(det.mean_, dtype=np.float64)))
        self.register_buffer("precision", torch.as_tensor(np.asarray(det.precision_, dtype=np.float64)))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        x, mask, w = constituent_features(raw, None, self.pt_input, self.pt_scale)
        z = self.model.representation(x, mask, w)
        if self.kind == "norm":
            return self.model.head(z).double().norm(dim=1)
        d = z.double() - self.mean
        return ((d @ self.precision) * d).sum(1)
