"""Training-free optimal-transport scores: distance of a jet to typical background jets.

Two references, both learned from background only: the average background jet (mean preprocessed jet image,
one "particle" per pixel) and k medoid jets found by k-medoids on a background pairwise-distance matrix.
The score is W_p (p = 1, the EMD, or p = 1/2) to the reference, or to the nearest medoid. With
``solver="lot"`` the medoids are found and the distances taken in the linearized-OT embedding (2008.08604):
one transport problem per jet against a k-means summary of the background instead of one per medoid (and
n_reference instead of n_reference^2 / 2 in `fit`); its cost in AUC is measured in docs/benchmarks/ot.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from jetad.data.sample import JetSample, SchemaError
from jetad.detectors.base import Detector, Progress, register
from jetad.detectors.inputs import InputSpec
from jetad.physics.emd import SOLVERS, average_jet, emd_to_medoids, emd_to_reference, kmedoids, pairwise_emd
from jetad.physics.linearized_ot import LotEmbedding, lot_distances, lot_embedding, lot_reference

__all__ = ["EMDScore"]


@register
class EMDScore(Detector):
    """W_p distance to the average background jet ('average') or to the nearest of k medoids ('medoids').

    Arguments:
        reference: 'average' or 'medoids'.
        p: 1 (EMD) or 0.5 (W_{1/2}, cost sqrt(dR/R)).
        k: number of medoids.
        n_reference: background jets used to build the reference (the pairwise matrix is n^2).
        n_constituents: leading constituents per jet entering the transport problem (cost grows as P^3).
        n_jobs: threads for the distance computations (<= 0: one per core).
        solver: 'exact' (compiled network simplex), 'pot' (POT per pair, the reference) or 'lot'
            (linearized OT, medoids only; approximate: docs/benchmarks/ot.md).
        lot_points: size of the LOT reference (k-means clusters of background constituents).
    """

    name: ClassVar[str] = "emd"

    def __init__(self, reference: str = "medoids", p: float = 1.0, k: int = 10, n_reference: int = 300,
                 n_constituents: int = 50, n_jobs: int = 1, inputs: InputSpec | dict | None = None, seed: int = 0,
                 solver: str = "exact", lot_points: int = 64):
        super().__init__(inputs=inputs, seed=seed)
        if reference not in ("average", "medoids"):
            raise ValueError(f"reference must be 'average' or 'medoids', got {reference!r}")
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        if solver == "lot" and reference == "average":
            raise ValueError("solver='lot' needs reference='medoids' (the average jet is one solve per jet anyway)")
        self.reference = reference
        self.p = p
        self.k = k
        self.n_reference = n_reference
        self.n_constituents = n_constituents
        self.n_jobs = n_jobs
        self.solver = solver
        self.lot_points = lot_points

    def default_inputs(self) -> dict[str, Any]:
        return {"kind": "constituents", "n_constituents": self.n_constituents}

    def _jets(self, sample: JetSample, source: str) -> np.ndarray:
        if sample.n_constituents == 0:
            raise SchemaError(f"{source}: constituents were not loaded; the EMD score needs them")
        return sample.constituents[:, : self.n_constituents]

    def fit(self, train: JetSample, val: JetSample | None = None, progress: Progress | None = None) -> EMDScore:
        """Pick the reference from (a seeded subset of) the background sample."""
        if len(train) == 0:
            raise SchemaError("training sample: empty, no background reference can be built")
        self.spec_ = self.input_spec().fit(train, train.describe("training sample"))
        self.r_ = float(train.attrs.get("jet_r", 0.8))
        rng = np.random.default_rng(self.seed)
        idx = np.sort(rng.choice(len(train), size=min(self.n_reference, len(train)), replace=False))
        jets = self._jets(train, train.describe("training sample"))[idx]
        if self.reference == "average":
            self.reference_jets_ = [average_jet(jets, align=True, extent=self.r_)]
        elif self.solver == "lot":
            self.lot_reference_ = lot_reference(jets, n_points=self.lot_points, R=self.r_, seed=self.seed)
            emb = self._embed(jets)
            medoids = kmedoids(lot_distances(emb), min(self.k, len(jets)), seed=self.seed).medoids
            self.reference_jets_ = [jets[i][jets[i][:, 0] > 0] for i in medoids]
            self.medoid_points_ = emb.points[medoids]
        else:
            dist = pairwise_emd(jets, p=self.p, R=self.r_, n_jobs=self.n_jobs, solver=self.solver)
            medoids = kmedoids(dist, min(self.k, len(jets)), seed=self.seed).medoids
            self.reference_jets_ = [jets[i][jets[i][:, 0] > 0] for i in medoids]
        return self

    def score(self, sample: JetSample) -> np.ndarray:
        """Distance to the background reference; larger = less like the background."""
        self._check_fitted()
        if len(sample) == 0:
            raise SchemaError("sample: empty, nothing to score")
        jets = self._jets(sample, sample.describe())
        if self.reference == "average":
            return emd_to_reference(jets, self.reference_jets_[0], p=self.p, R=self.r_, align=True,
                                    n_jobs=self.n_jobs)
        if self.solver == "lot":
            emb = self._embed(jets)
            medoids = LotEmbedding(self.medoid_points_, emb.weights, emb.p, emb.R)
            return lot_distances(emb, medoids).min(axis=1)
        return emd_to_medoids(jets, self.reference_jets_, p=self.p, R=self.r_, n_jobs=self.n_jobs,
                              solver=self.solver)

    def _embed(self, jets: np.ndarray) -> LotEmbedding:
        return lot_embedding(jets, self.lot_reference_, p=self.p, R=self.r_, n_jobs=self.n_jobs)

    def _get_state(self) -> dict[str, Any]:
        state = {"r": self.r_, "reference_jets": [np.asarray(j) for j in self.reference_jets_]}
        if self.solver == "lot":
            state |= {"lot_reference": self.lot_reference_, "medoid_points": self.medoid_points_}
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        self.r_ = state["r"]
        self.reference_jets_ = state["reference_jets"]
        if "lot_reference" in state:
            self.lot_reference_, self.medoid_points_ = state["lot_reference"], state["medoid_points"]
