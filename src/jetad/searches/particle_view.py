"""What the particle-level resonant searches read: both jets' constituents in jet-relative coordinates.

The LHC Olympics particle-level strategies (2101.08320: particle graph autoencoders, the VRNN, LDA on the Lund
plane) read the jets' constituents, not only jet features. A dijet `JetSample` holds jet 1's constituents in
`constituents` / `mask` and jet 2's in ``event["j2_constituents"]`` / ``event["j2_mask"]`` (as
`jetad.data.clustering.dijet_rows` writes them). `ParticleSearch` extends the `DijetView` of
`ResonantSearch` with both jets' clouds: per particle (pT / sum pT of the jet, eta - eta_jet, phi - phi_jet),
pT-sorted and capped at `n_particles`, the jet axis being the four-vector sum of its constituents.
`TorchParticleSearch` adds the part the network searches share: one torch network per fold, trained on the
jets of the fold's training events with `jetad.detectors.training.train_loop`, stored as a state dict of
tensors plus a JSON config (the model-file format), and a per-jet loss combined over the two jets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from jetad.data.sample import JetSample, SchemaError, jet_four_vectors
from jetad.searches.base import DijetView, ResonantSearch
from jetad.searches.unsupervised import module_state

__all__ = ["COMBINE", "PARTICLE_SEARCH_FEATURES", "TRAIN_REGIONS", "ParticleDijetView", "ParticleSearch",
           "TorchParticleSearch", "dijet_particles", "relative_particles"]

#: Which events train the fold models: the sidebands (the SR is never trained on), the SR, or all events.
TRAIN_REGIONS = ("sidebands", "sr", "all")
#: How the two jets' per-jet scores become one event score.
COMBINE = ("max", "sum")
#: Event columns that identify the fitted events (`_event_keys`), not trained on: every dijet sample has them.
PARTICLE_SEARCH_FEATURES = ("mj1", "delta_mj")
#: Events per chunk when the relative coordinates are computed.
_ROWS = 20_000


@dataclass
class ParticleDijetView(DijetView):
    """A `DijetView` plus both jets' constituents: (N, 2, P, 3) (pT fraction, d_eta, d_phi) and a (N, 2, P) mask."""

    particles: np.ndarray
    particle_mask: np.ndarray


def relative_particles(constituents: np.ndarray, mask: np.ndarray, n_particles: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, n, 3) float32 (pT / sum pT, eta - eta_jet, phi - phi_jet wrapped to [-pi, pi)) and the (N, n) mask.

    The jet axis is the four-vector sum of the real constituents; particles are pT-sorted and the `n_particles`
    hardest kept (n = n_particles, zero-padded); the pT fractions use every real constituent's pT.
    """
    constituents = np.asarray(constituents, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    axis = jet_four_vectors(constituents, mask).astype(np.float64)
    pt = np.where(mask, constituents[..., 0], 0.0)
    total = np.maximum(pt.sum(axis=1, keepdims=True), 1e-12)
    deta = constituents[..., 1] - axis[:, 1:2]
    dphi = (constituents[..., 2] - axis[:, 2:3] + np.pi) % (2 * np.pi) - np.pi
    cloud = np.stack([pt / total, deta, dphi], axis=-1) * mask[..., None]
    order = np.argsort(-pt, axis=1, kind="stable")[:, :n_particles]
    cloud = np.take_along_axis(cloud, order[..., None], axis=1)
    kept = np.take_along_axis(mask, order, axis=1)
    pad = n_particles - cloud.shape[1]
    if pad > 0:
        cloud = np.pad(cloud, ((0, 0), (0, pad), (0, 0)))
        kept = np.pad(kept, ((0, 0), (0, pad)))
    return cloud.astype(np.float32), kept


def dijet_particles(sample: JetSample, n_particles: int, source: str, needed_by: str) -> tuple[np.ndarray, np.ndarray]:
    """Both jets' `relative_particles`, (N, 2, n, 3) and (N, 2, n); SchemaError when the sample has none."""
    jet2 = sample.event.get("j2_constituents"), sample.event.get("j2_mask")
    has_jet1 = sample.constituents.ndim == 3 and sample.constituents.shape[1] > 0 and bool(sample.mask.any())
    if not has_jet1 or jet2[0] is None or jet2[1] is None or np.asarray(jet2[0]).ndim != 3:
        raise SchemaError(
            f"{source}: the {needed_by} search reads both jets' constituents, but the sample has none (constituents "
            f"{sample.constituents.shape}, event/j2_constituents {'present' if jet2[0] is not None else 'missing'}); "
            "use a dijet file with particles ('jetad generate' dijet production or a converted LHCO file)"
        )
    jets = ((sample.constituents, sample.mask), (np.asarray(jet2[0]), np.asarray(jet2[1], dtype=bool)))
    parts = np.zeros((len(sample), 2, n_particles, 3), np.float32)
    masks = np.zeros((len(sample), 2, n_particles), bool)
    for start in range(0, len(sample), _ROWS):  # bounded float64 temporaries (LHCO jets have up to 700 particles)
        rows = slice(start, start + _ROWS)
        for j, (const, mask) in enumerate(jets):
            parts[rows, j], masks[rows, j] = relative_particles(const[rows], mask[rows], n_particles)
    return parts, masks


class ParticleSearch(ResonantSearch):
    """A resonant search that reads both jets' constituents (the mixin: overrides `_view`).

    Arguments:
        n_particles: hardest constituents kept per jet.
        train_region: which events train the fold models, one of `TRAIN_REGIONS`.
        features: event columns that identify the events of the fitted sample (not trained on); default
            `PARTICLE_SEARCH_FEATURES`, which every dijet sample has.
        **kwargs: `ResonantSearch` options (signal_region, sideband_width, n_folds, seed, ...).
    """

    reads_constituents: ClassVar[bool] = True

    def __init__(self, n_particles: int = 30, train_region: str = "sidebands",
                 features: tuple[str, ...] = PARTICLE_SEARCH_FEATURES, **kwargs: Any):
        super().__init__(features=features, **kwargs)
        if not isinstance(n_particles, int) or n_particles < 2:
            raise ValueError(f"n_particles must be an integer >= 2 (constituents per jet), got {n_particles!r}")
        if train_region not in TRAIN_REGIONS:
            raise ValueError(f"train_region must be one of {TRAIN_REGIONS}, got {train_region!r}")
        self.n_particles = n_particles
        self.train_region = train_region

    def _view(self, sample: JetSample, checked: bool) -> ParticleDijetView:
        base = super()._view(sample, checked)  # names an empty sample, checks the regions
        particles, mask = dijet_particles(sample, self.n_particles, base.source, self.name)
        return ParticleDijetView(**vars(base), particles=particles, particle_mask=mask)

    def _needs_sidebands(self) -> bool:
        return self.train_region == "sidebands"

    def _fold_strata(self, view: DijetView) -> np.ndarray:
        region = {"sidebands": view.sb, "sr": view.sr, "all": np.ones(len(view.mjj), bool)}[self.train_region]
        return np.where(region, 0, -1)

    @staticmethod
    def _jets(view: DijetView, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The jets of `rows` as one cloud per jet: (2n, P, 3) and (2n, P), jet 1s then jet 2s."""
        assert isinstance(view, ParticleDijetView)
        parts, mask = view.particles[rows], view.particle_mask[rows]
        return np.concatenate([parts[:, 0], parts[:, 1]]), np.concatenate([mask[:, 0], mask[:, 1]])


class TorchParticleSearch(ParticleSearch):
    """A particle search with one torch network per fold and a per-jet loss as the jet's anomaly score.

    Subclasses implement `_network_config()` (JSON), `_build(config)` (the network) and
    `_jet_loss(network, x, mask)` ((B,) loss per jet, differentiable). The event score combines the two jets'
    losses (`combine`); a fold model is stored as {"config": ..., "state": state dict of tensors}.

    Arguments:
        combine: 'max' (the more anomalous jet) or 'sum' of the two jets' scores.
        epochs, batch_size, lr, patience: training (Adam; the best epoch by the loss on a seeded 20% of the
            fold's training jets, held out).
        **kwargs: `ParticleSearch` options.
    """

    def __init__(self, combine: str = "max", epochs: int = 30, batch_size: int = 256, lr: float = 1e-3,
                 patience: int = 5, **kwargs: Any):
        super().__init__(**kwargs)
        if combine not in COMBINE:
            raise ValueError(f"combine must be one of {COMBINE}, got {combine!r}")
        for option, value in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{option} must be a positive integer, got {value!r}")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        self.combine = combine
        self.epochs, self.batch_size, self.lr, self.patience = epochs, batch_size, lr, patience

    # -- subclass hooks --------------------------------------------------------------------------------
    def _network_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def _build(self, config: dict[str, Any]) -> torch.nn.Module:
        raise NotImplementedError

    def _jet_loss(self, network: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _jet_score(self, network: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,) anomaly score per jet (default: the training loss)."""
        return self._jet_loss(network, x, mask)

    # -- fold models -----------------------------------------------------------------------------------
    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> dict[str, Any]:
        from jetad.detectors.training import train_loop

        x, mask = self._jets(view, rows)
        seed = self.seed + 1000 * k
        held = np.random.default_rng([seed, 7]).uniform(size=len(x)) < 0.2
        config = self._network_config()
        torch.manual_seed(seed)
        network = self._build(config)
        val_x, val_mask = torch.as_tensor(x[held]), torch.as_tensor(mask[held])

        def step(*batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:  # (clouds, masks)
            return self._jet_loss(network, *batch).mean(), {}

        def criterion() -> float:
            with torch.no_grad():
                return float(self._jet_loss(network, val_x, val_mask).mean())

        history = train_loop(network, step, criterion, (x[~held], mask[~held]), epochs=self.epochs,
                             batch_size=self.batch_size, lr=self.lr, patience=self.patience, seed=seed,
                             device=torch.device("cpu"))
        return {"config": config, "state": module_state(network), "best_epoch": history.best_epoch}

    def _network(self, model: dict[str, Any]) -> torch.nn.Module:
        network = self._build(model["config"])
        network.load_state_dict(model["state"])
        return network.eval()

    def _predict(self, model: Any, view: DijetView, rows: np.ndarray) -> np.ndarray:
        network = self._network(model)
        x, mask = self._jets(view, rows)
        with torch.no_grad():
            scores = torch.cat([self._jet_score(network, torch.as_tensor(x[i:i + 4096]),
                                                torch.as_tensor(mask[i:i + 4096]))
                                for i in range(0, len(x), 4096)]) if len(x) else torch.zeros(0)
        return scores.double().numpy().reshape(2, len(rows)).T

    def _combine(self, outputs: np.ndarray) -> np.ndarray:
        return outputs.max(axis=1) if self.combine == "max" else outputs.sum(axis=1)

    def n_parameters(self) -> int:
        """Trainable parameters of the fold networks (their stored state dicts)."""
        self._check_fitted()
        return sum(int(t.numel()) for model in self.models_ for t in model["state"].values())
