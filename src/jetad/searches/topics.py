"""Factorized topic modelling: each dijet event a mixture of topics, each topic a product of per-jet histograms.

Jet topics (Metodiev & Thaler, 1802.00008) treat jets as draws from a few underlying distributions (topics)
mixed in different proportions. The LHC Olympics "factorized topic modelling" entry (in 2101.08320)
applies this to dijet events: given its topic, an event's two jets are independent, so the signal-region data
follow p(o1, o2) = sum_k f_k p_k(o1) p_k(o2), with o a per-jet observable (jet mass, or jet mass x tau21).
QCD dijets are close to a single topic (two nearly independent jets); a resonance decaying to two jets of
fixed masses adds a second, sharply peaked one. Fitted by expectation-maximisation on the SR data, the
posterior probability of the non-dominant topic given an event's two jets is its anomaly score.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from jetad.detectors.estimator import register
from jetad.searches.base import DijetView, ResonantSearch

__all__ = ["OBSERVABLES", "FactorizedTopics", "fit_factorized_topics", "topic_log_likelihoods"]

#: Per-jet observables: the columns of (jet 1, jet 2) per observable (jets ordered by mass; the model is symmetric).
OBSERVABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "mass": (("mj1", "mj2"),),
    "mass_tau21": (("mj1", "mj2"), ("tau21_j1", "tau21_j2")),
}


def topic_log_likelihoods(cells: np.ndarray, log_fractions: np.ndarray, log_topics: np.ndarray) -> np.ndarray:
    """(n, K) log f_k + log p_k(cell of jet 1) + log p_k(cell of jet 2) for (n, 2) integer cells."""
    return log_fractions[None, :] + log_topics[:, cells[:, 0]].T + log_topics[:, cells[:, 1]].T


def _posteriors(loglik: np.ndarray) -> tuple[np.ndarray, float]:
    """(n, K) topic posteriors of each event, and the total log-likelihood [nats]."""
    norm = np.logaddexp.reduce(loglik, axis=1)
    return np.exp(loglik - norm[:, None]), float(norm.sum())


def _em(cells: np.ndarray, n_cells: int, log_f: np.ndarray, log_p: np.ndarray, max_iter: int, tol: float,
        pseudo_count: float) -> tuple[np.ndarray, np.ndarray, float]:
    """EM iterations from (log_f, log_p) until the log-likelihood gains less than `tol` nats per event."""
    previous = -np.inf
    total = previous
    for _ in range(max_iter):
        post, total = _posteriors(topic_log_likelihoods(cells, log_f, log_p))
        weight = post.sum(axis=0)  # expected events per topic
        counts = np.stack([np.bincount(cells.ravel(), weights=np.repeat(post[:, k], 2), minlength=n_cells)
                           for k in range(post.shape[1])])  # both jets of every event, pooled (symmetric topics)
        log_f = np.log(weight / weight.sum())
        log_p = np.log(counts + pseudo_count) - np.log(counts.sum(axis=1, keepdims=True) + pseudo_count * n_cells)
        if total - previous < tol * len(cells):
            break
        previous = total
    return log_f, log_p, total


def fit_factorized_topics(cells: np.ndarray, n_cells: int, n_topics: int = 2, n_restarts: int = 5,
                          max_iter: int = 300, tol: float = 1e-7, pseudo_count: float = 0.5,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """EM fit of p(c1, c2) = sum_k f_k p_k(c1) p_k(c2) to (n, 2) per-jet histogram cells (best of seeded restarts).

    Each restart starts from the data's per-jet marginal times independent Gamma(1) noise per topic and cell;
    `pseudo_count` events per cell regularise the topic histograms (a Dirichlet prior: EM finds the MAP fit).
    Returns (log fractions (K,), log topic histograms (K, n_cells)), topics sorted by fraction, dominant first.
    """
    rng = np.random.default_rng(seed)
    marginal = np.bincount(cells.ravel(), minlength=n_cells) + pseudo_count
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(n_restarts):
        start = marginal[None, :] * rng.gamma(1.0, size=(n_topics, n_cells))
        log_p = np.log(start / start.sum(axis=1, keepdims=True))
        log_f = np.log(rng.dirichlet(np.ones(n_topics)))
        fitted = _em(cells, n_cells, log_f, log_p, max_iter, tol, pseudo_count)
        if best is None or fitted[2] > best[2]:
            best = fitted
    assert best is not None  # n_restarts >= 1
    order = np.argsort(-best[0], kind="stable")
    return best[0][order], best[1][order]


@register
class FactorizedTopics(ResonantSearch):
    """Factorized topic model (1802.00008; LHCO entry in 2101.08320) of the SR data; k-fold cross-fitted.

    Per fold: quantile bin edges of the per-jet observables (both jets pooled) on the SR events of the other
    folds, then the EM fit of sum_k f_k p_k(o1) p_k(o2) to their histogram cells. Score = posterior probability
    that the event belongs to any topic but the dominant one (for two topics: the signal topic). Events outside
    the SR are scored by one seeded fold model each, like every search here.

    Simplified: histograms in a few quantile bins per jet observable (the entry used fine jet-mass bins); the
    same topic histogram for both jets (the two jets of a topic are exchangeable, so the mass ordering of the
    inputs does not matter); the signal topic is the non-dominant one by fraction, with no check that it is
    over-populated in the SR; EM with a small Dirichlet pseudo-count instead of the anchor-bin (reducibility)
    extraction of 1802.00008.

    Arguments:
        observables: 'mass' (jet mass) or 'mass_tau21' (jet mass x tau21 cells per jet).
        n_mass_bins, n_tau21_bins: quantile bins per observable (>= 2).
        n_topics: topics of the mixture (>= 2; 2 = background + signal).
        n_restarts, max_iter, tol, pseudo_count: EM restarts (best likelihood kept), iterations, stopping gain
            [nats per event] and pseudo-events per cell.
        **kwargs: `ResonantSearch` options except `features` (set by `observables`).

    Example:
        search = FactorizedTopics(observables="mass_tau21").fit(data)
        p_signal = search.scores_[search.signal_region_]
    """

    name: ClassVar[str] = "topics"

    def __init__(self, observables: str = "mass_tau21", n_mass_bins: int = 12, n_tau21_bins: int = 4,
                 n_topics: int = 2, n_restarts: int = 5, max_iter: int = 300, tol: float = 1e-7,
                 pseudo_count: float = 0.5, **kwargs: Any):
        if observables not in OBSERVABLES:
            raise ValueError(f"observables must be one of {sorted(OBSERVABLES)}, got {observables!r}")
        columns = tuple(c for pair in OBSERVABLES[observables] for c in pair)
        features = kwargs.pop("features", None)
        if features is not None and tuple(features) != columns:
            raise ValueError(f"FactorizedTopics reads the columns {columns} of observables={observables!r}; "
                             "do not pass features")
        super().__init__(features=columns, **kwargs)
        for option, value, least in (("n_mass_bins", n_mass_bins, 2), ("n_tau21_bins", n_tau21_bins, 2),
                                     ("n_topics", n_topics, 2), ("n_restarts", n_restarts, 1),
                                     ("max_iter", max_iter, 1)):
            if int(value) != value or value < least:
                raise ValueError(f"{option} must be an integer >= {least}, got {value!r}")
        if pseudo_count <= 0:
            raise ValueError(f"pseudo_count must be positive (empty cells need a floor), got {pseudo_count}")
        if tol < 0:
            raise ValueError(f"tol must be >= 0 [nats per event], got {tol}")
        self.observables = observables
        self.n_mass_bins, self.n_tau21_bins = n_mass_bins, n_tau21_bins
        self.n_topics, self.n_restarts, self.max_iter, self.tol = n_topics, n_restarts, max_iter, tol
        self.pseudo_count = pseudo_count

    def _needs_sidebands(self) -> bool:
        return False

    def _jet_observables(self, view: DijetView, rows: np.ndarray) -> list[np.ndarray]:
        """Per observable, the (n, 2) values of (jet 1, jet 2)."""
        return [view.x[rows][:, 2 * i:2 * i + 2].astype(np.float64) for i in range(len(OBSERVABLES[self.observables]))]

    def _cells(self, model: dict[str, Any], view: DijetView, rows: np.ndarray) -> np.ndarray:
        """(n, 2) histogram cell of each jet: the row-major index of its bins, one per observable."""
        cells = np.zeros((len(rows), 2), np.int64)
        for values, edges in zip(self._jet_observables(view, rows), model["edges"], strict=True):
            cells = cells * (len(edges) + 1) + np.searchsorted(edges, values, side="right")
        return cells

    def _fold_strata(self, view: DijetView) -> np.ndarray:
        return np.where(view.sr, 0, -1)

    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> dict[str, Any]:
        bins = (self.n_mass_bins, self.n_tau21_bins)
        edges = [np.unique(np.quantile(values.ravel(), np.linspace(0, 1, n + 1)[1:-1]))
                 for values, n in zip(self._jet_observables(view, rows), bins, strict=False)]
        model: dict[str, Any] = {"edges": edges}
        n_cells = int(np.prod([len(e) + 1 for e in edges]))
        log_f, log_p = fit_factorized_topics(self._cells(model, view, rows), n_cells, self.n_topics,
                                             self.n_restarts, self.max_iter, self.tol, self.pseudo_count,
                                             seed=self.seed + 1000 * (k + 1))
        return model | {"log_fractions": log_f, "log_topics": log_p}

    def _predict(self, model: dict[str, Any], view: DijetView, rows: np.ndarray) -> np.ndarray:
        post, _ = _posteriors(topic_log_likelihoods(self._cells(model, view, rows), model["log_fractions"],
                                                    model["log_topics"]))
        return 1.0 - post[:, 0]  # topics are sorted by fraction: 0 is the dominant (background) topic

    def n_parameters(self) -> int:
        """Free parameters of the fold models' topic fits: K (n_cells - 1) + K - 1 each."""
        self._check_fitted()
        return sum(m["log_topics"].size - 1 for m in self.models_)
