"""A combination of resonant searches: their out-of-fold scores stacked by a CWoLa classifier, or rank-combined.

Different strategies see different parts of a signal (a density-ratio search the jet masses, a topic model the
two-jet structure, a classifier the substructure). Each member's out-of-fold scores are inputs to a second
weakly supervised stage: a classifier of signal region versus sidebands (CWoLa hunting, 1805.02664) on the
members' scores learns how to weigh them without labels, as stacked generalization (Wolpert 1992) would with
labels. A second contrast avoids the sidebands altogether: SR data against a fresh background template drawn from
a CATHODE member's sideband flow, scored by every member ('template': the combiner is then a CATHODE classifier
whose inputs are the members' scores). As label-free alternatives: the mean of the members' score ranks, or the
smallest member tail probability (min-p). The merge was proposed in issue 14; the LHC Olympics report
(2101.08320) compares the members side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from jetad.data.sample import JetSample, SchemaError
from jetad.detectors.estimator import register
from jetad.searches import topics as _topics  # noqa: F401  (registers the default member)
from jetad.searches.base import DijetView, ResonantSearch
from jetad.searches.classifiers import fit_classifier

__all__ = ["COMBINATIONS", "SHARED_OPTIONS", "STACKERS", "CombinedSearch", "fit_positive_logistic",
           "fit_tail_weights", "normal_scores", "simplex_grid", "tail_excess", "tail_probabilities"]

#: 'stack' = CWoLa classifier on the member scores; 'template' = classifier of SR data vs a CATHODE member's
#: background template on the member scores; 'rank_mean' = mean rank; 'min_p' = smallest tail probability.
COMBINATIONS = ("stack", "template", "rank_mean", "min_p")
#: The second stage of 'stack' / 'template': boosted trees; a logistic regression with non-negative weights on
#: the members' normal scores (`normal_scores`); or weights on the simplex chosen for the largest excess of
#: label-1 events in the tail (`fit_tail_weights`).
STACKERS = ("trees", "linear", "tail")
#: Options every member takes from the combination (the same regions and folds for all).
SHARED_OPTIONS = ("signal_region", "n_folds", "seed", "min_sideband_events")


def _ranks(reference: np.ndarray, scores: np.ndarray, side: Literal["left", "right"]) -> np.ndarray:
    """(n, M) count of reference events (sorted (R, M) columns) below each score ('left': strictly below;
    'right': at or below), column by column."""
    return np.stack([np.searchsorted(reference[:, m], scores[:, m], side=side)
                     for m in range(scores.shape[1])], axis=1)


def tail_probabilities(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(n, M) fraction of the reference events (sorted (R, M) columns) scoring >= each score, (+1)/(R + 1)."""
    n_ref = len(reference)
    return (n_ref - _ranks(reference, scores, "left") + 1.0) / (n_ref + 1.0)


def normal_scores(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(n, M) Phi^-1 of 1 - the mid-rank tail probability of each score among the sorted (R, M) reference: under
    the reference's distribution each column is N(0, 1), whatever the member's units; ties stay ties."""
    from scipy.stats import norm

    n_ref = len(reference)
    mid = 0.5 * (_ranks(reference, scores, "left") + _ranks(reference, scores, "right"))
    return norm.isf((n_ref - mid + 0.5) / (n_ref + 1.0))


def _template_columns(features: tuple[str, ...]) -> tuple[str, ...]:
    """The columns of a template in `features`: those, plus mj2 (= mj1 + delta_mj) when it can be derived."""
    derivable = {"mj1", "delta_mj"} <= set(features) and "mj2" not in features
    return (*features, "mj2") if derivable else tuple(features)


def fit_positive_logistic(z: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> tuple[np.ndarray, float]:
    """Weights w >= 0 and intercept b of the class-balanced logistic regression of y on z (L-BFGS-B, L2 on w):
    a combined score z . w that never falls as a member's score rises."""
    from scipy.optimize import minimize

    weight = np.where(y == 1, 0.5 / max((y == 1).sum(), 1), 0.5 / max((y == 0).sum(), 1))

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        f = z @ theta[:-1] + theta[-1]
        prob = 0.5 * (1.0 + np.tanh(0.5 * f))  # sigmoid without overflow
        value = float(np.sum(weight * (np.logaddexp(0.0, f) - y * f)) + l2 * theta[:-1] @ theta[:-1])
        g = weight * (prob - y)
        return value, np.r_[z.T @ g + 2 * l2 * theta[:-1], g.sum()]

    m = z.shape[1]
    res = minimize(loss, np.r_[np.full(m, 1.0 / m), 0.0], jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None)] * m + [(None, None)])
    return res.x[:-1], float(res.x[-1])


def simplex_grid(n_members: int, steps: int) -> np.ndarray:
    """(G, n_members) every weight vector with entries k / steps (k = 0..steps) summing to 1, in lexicographic
    order (the first vertex, all weight on member 0, last)."""
    from itertools import combinations

    rows = []
    for bars in combinations(range(steps + n_members - 1), n_members - 1):  # stars and bars
        edges = (-1, *bars, steps + n_members - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(n_members)])
    return np.array(rows, dtype=np.float64) / steps


def tail_excess(signal_like: np.ndarray, reference: np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """(G,) mean over `fractions` q of (n_pass - n q) / sqrt(n q): the excess of the n label-1 scores over the
    cut that keeps a fraction q of the reference scores, in units of its Poisson error. Columns are weight
    vectors: `signal_like` (n, G), `reference` (R, G)."""
    n = len(signal_like)
    out = np.zeros(signal_like.shape[1])
    for q in fractions:
        cut = np.quantile(reference, 1.0 - q, axis=0)
        expected = n * q
        out += ((signal_like > cut).sum(axis=0) - expected) / np.sqrt(expected)
    return out / len(fractions)


def fit_tail_weights(z: np.ndarray, y: np.ndarray, fractions: Sequence[float] = (0.01, 0.02, 0.05),
                     steps: int = 10) -> tuple[np.ndarray, float]:
    """Non-negative weights summing to 1 on the columns of z (members' normal scores) that maximize
    `tail_excess` of the y = 1 events over the y = 0 events' cuts: the cut-based figure of merit of a bump hunt
    (S / sqrt(B) after a cut at the background efficiency q, B from the label-0 template), on a grid of step
    1 / `steps`. Ties (a saturated tail: every label-1 event above every cut) go to the largest standardized mean
    difference of the combined score (the bulk separation), then to the first in grid order. Returns the weights
    and the objective at them."""
    grid = simplex_grid(z.shape[1], steps)
    combined = z @ grid.T
    ones, zeros = combined[y == 1], combined[y == 0]
    objective = tail_excess(ones, zeros, fractions)
    tied = np.flatnonzero(objective >= objective.max() - 1e-9)
    bulk = (ones[:, tied].mean(axis=0) - zeros[:, tied].mean(axis=0)) / np.maximum(zeros[:, tied].std(axis=0), 1e-12)
    best = int(tied[np.argmax(bulk)])
    return grid[best], float(objective[best])


@register
class CombinedSearch(ResonantSearch):
    """Several searches fitted on the same data, their out-of-fold scores combined (cross-fitted again).

    Every member gets this search's signal region, folds, seed and `min_sideband_events`, is fitted (and
    cross-fitted as usual), and gives each event its out-of-fold score. The combination is cross-fitted over the
    SR and sideband events with folds stratified by region (CWoLa's folds: the same fold of every event as
    in a CWoLa member): fold k's combiner is trained on the member scores of the other folds only, and every
    member score it reads is out-of-fold, so no model behind an event's combined score was trained on that
    event. (The members' scores of the combiner's training events come from member models that did see fold k:
    the usual second-order leak of stacking; refitting every member inside every fold would remove it at
    n_folds times the cost.) Members whose folds are drawn over the SR alone (CATHODE, topics) have other fold
    ids than the combination's; the guarantee above does not depend on them.

    Stackers ('stack', 'template'): 'trees' (below) or 'linear' - a class-balanced logistic regression with
    non-negative weights on the members' normal scores relative to the label-0 events (the template, or the
    sidebands): each member score becomes Phi^-1(1 - its tail probability among those events), N(0, 1) for
    background, and the combined score is the fitted weighted sum (Stouffer's method with learned weights). A
    handful of parameters: no early stopping, no fallback to the constant prior, no ties beyond the members'.
    'tail' - the same normal scores, weighted by the point of a simplex grid (step 1 / `tail_steps`) with the
    largest excess of label-1 events in the tail (`fit_tail_weights`: (n_pass - n q) / sqrt(n q) at cuts keeping
    the fractions `tail_fractions` of the label-0 events): the figure of merit the bump hunt rewards, where the
    logistic loss weighs every event alike. A vertex of the grid is one member alone.

    Combinations: 'stack' - a classifier of SR (1) vs sidebands (0) on the member scores, class-balanced (a
    CWoLa hunt whose inputs are the scores), by default boosted trees constrained to increase with every member
    score (`monotone`: on the toy a free stacker lost 0.02-0.03 of SR AUC to the best member, a monotone one
    none); 'template' - the same classifier, trained on SR data (1) against `template_oversampling` x N_SR fresh
    background events (0) drawn from the sideband flow of the first CATHODE member at SR mjj values, every
    member scoring those events (folds over the SR, as CATHODE's). The sidebands' member scores differ from the
    SR's through the features' mjj dependence alone (CATHODE's score is trained in the SR), which the 'stack'
    combiner learns instead of the signal; the template has the SR's mjj and no signal. The template is drawn
    anew (never the samples a CATHODE classifier was trained on, whose scores are biased low), and every
    member must read only the template member's features (plus mj2 = mj1 + delta_mj), and each template event is
    scored by one fold model of each member drawn at random (`single_model_scores`), as the data's out-of-fold
    scores are (the fold mean's narrower spread let 4.3% of the SR background pass a CWoLa member's 1% template
    cut on the toy of tests/test_topics_combination.py);
    'rank_mean' - the mean over members of 1 - p_m, p_m the fraction of the training folds' SR and
    sideband events scoring at least as high under member m; 'min_p' - -log min_m p_m (a member that alone
    sees the signal decides).

    Arguments:
        members: (registry name, parameters) per member, e.g. (("cwola", {}), ("topics", {"observables": "mass"})).
            Member parameters may not set the shared options (`SHARED_OPTIONS`); a member keeps its own
            sideband_width and features unless they are given.
        combine: one of `COMBINATIONS`.
        template_oversampling: template events per SR data event ('template').
        stacker: one of `STACKERS` ('stack' and 'template').
        tail_fractions, tail_steps: the background efficiencies and the grid of `stacker='tail'`.
        monotone: constrain the stacking trees to be non-decreasing in every member score ('hgb' only; sets
            sklearn's `monotonic_cst` unless `classifier_params` gives one).
        classifier, classifier_params, n_ensemble: the stacking classifier (as in `CWoLaHunting`). By default an
            ensemble of 5 per fold (`ClassifierEnsemble`): a single early-stopped classifier kept the constant
            prior in 2 of 5 folds on a toy where one member alone had SR AUC 0.98 (its 3-nat test on a fifth of
            the fold), and the mix of constant and learned folds gave 0.82; the ensemble's one out-of-bag test
            kept every fold (0.99). docs/benchmarks/lhco_combination.md compares both.
        **kwargs: `ResonantSearch` options; the combination's own `features` only identify events.

    Example:
        search = CombinedSearch(members=(("cwola", {}), ("cathode", {"n_ensemble": 5}))).fit(data)
        per_member = search.member_scores_; combined = search.scores_
    """

    name: ClassVar[str] = "combined"

    def __init__(self, members: Sequence[tuple[str, dict[str, Any]]] = (("cwola", {}), ("topics", {})),
                 combine: str = "stack", monotone: bool = True, classifier: str = "hgb",
                 classifier_params: dict[str, Any] | None = None, n_ensemble: int = 5,
                 template_oversampling: float = 4.0, stacker: str = "trees",
                 tail_fractions: Sequence[float] = (0.01, 0.02, 0.05), tail_steps: int = 10, **kwargs: Any):
        super().__init__(**kwargs)
        if combine not in COMBINATIONS:
            raise ValueError(f"combine must be one of {COMBINATIONS}, got {combine!r}")
        if n_ensemble < 1:
            raise ValueError(f"n_ensemble must be >= 1 (classifiers per fold), got {n_ensemble}")
        if stacker not in STACKERS:
            raise ValueError(f"stacker must be one of {STACKERS}, got {stacker!r}")
        if not template_oversampling > 0:
            raise ValueError(f"template_oversampling must be positive, got {template_oversampling}")
        fractions = tuple(tail_fractions) if isinstance(tail_fractions, (list, tuple)) else ()
        if not fractions or not all(isinstance(q, (int, float)) and 0 < q < 1 for q in fractions):
            raise ValueError(f"tail_fractions must be a non-empty list of efficiencies in (0, 1), "
                             f"got {tail_fractions!r}")
        if not isinstance(tail_steps, int) or tail_steps < 1:
            raise ValueError(f"tail_steps must be an integer >= 1, got {tail_steps!r}")
        if monotone and combine in ("stack", "template") and stacker == "trees" and classifier != "hgb":
            raise ValueError(f"monotone=True needs classifier='hgb' (monotonic trees), got classifier={classifier!r}; "
                             "pass monotone=False")
        self.members = members
        self.combine = combine
        self.monotone = monotone
        self.classifier = classifier
        self.classifier_params = classifier_params
        self.n_ensemble = n_ensemble
        self.template_oversampling = template_oversampling
        self.stacker = stacker
        self.tail_fractions, self.tail_steps = tuple(float(q) for q in fractions), tail_steps
        built = [self._member(i) for i in range(len(self._member_specs()))]  # checked now, before any data
        if combine == "template":
            self._template_member(built)

    def _member_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """The members as (name, parameters), checked: at least one, no nested combination, no shared options."""
        members = self.members
        if isinstance(members, (str, dict)) or not isinstance(members, Sequence) or not members:
            raise ValueError(f"members must be a non-empty list of (search name, parameters) pairs, got {members!r}")
        specs = []
        for i, spec in enumerate(members):
            if not (isinstance(spec, (list, tuple)) and len(spec) == 2 and isinstance(spec[0], str)
                    and isinstance(spec[1], dict)):
                raise ValueError(f"members[{i}] must be a (search name, parameters dict) pair, got {spec!r}")
            name, params = spec
            if name == self.name:
                raise ValueError(f"members[{i}]: a combination cannot be a member of a combination")
            shared = sorted(set(params) & set(SHARED_OPTIONS))
            if shared:
                raise ValueError(f"members[{i}] ({name!r}): {', '.join(shared)} set by the combination (every member "
                                 "shares its regions and folds); set them on the combined search")
            specs.append((name, dict(params)))
        return specs

    def _member(self, i: int) -> ResonantSearch:
        """Member i, unfitted, with the shared options of this search."""
        from jetad.searches import make_search

        name, params = self._member_specs()[i]
        shared = {"signal_region": self.signal_region, "n_folds": self.n_folds, "seed": self.seed,
                  "min_sideband_events": self.min_sideband_events}
        try:
            return make_search(name, **params, **shared)
        except ValueError as err:
            raise ValueError(f"members[{i}] ({name!r}): {err}") from None

    def _template_member(self, members: list[ResonantSearch]) -> int:
        """Index of the member whose sideband flow draws the template: the first CATHODE (not ANODE) member;
        every member must read only its features (and mj2, derived from mj1 and delta_mj)."""
        from jetad.searches.cathode import CathodeSearch

        found = [i for i, m in enumerate(members) if isinstance(m, CathodeSearch) and not m.anode]
        if not found:
            raise ValueError("combine='template' needs a CATHODE member (('cathode', {...}), not anode=True): its "
                             "sideband flow draws the background template")
        columns = set(_template_columns(members[found[0]].features))
        for i, m in enumerate(members):
            if m.reads_constituents or not set(m.features) <= columns:
                raise ValueError(
                    f"members[{i}] ({m.name!r}) reads {'constituents' if m.reads_constituents else m.features}; "
                    f"combine='template' scores the template of members[{found[0]}] (cathode), which holds only "
                    f"{tuple(members[found[0]].features)}: give every member features from that set")
        return found[0]

    # -- fitting -------------------------------------------------------------------------------------
    def fit(self, data: JetSample) -> CombinedSearch:
        """Fit every member on `data`, then the cross-fitted combination of their out-of-fold scores."""
        self.members_ = [self._member(i).fit(data) for i in range(len(self._member_specs()))]
        if self.combine == "template":
            self.template_scores_ = self._template_scores(data)
        return self.fit_combination(data)

    def fit_combination(self, data: JetSample) -> CombinedSearch:
        """Refit the cross-fitted combination stage only, on the fitted members (and template) of the same `data`:
        after changing `stacker` or the combiner's options, without refitting the members."""
        if not hasattr(self, "members_"):
            raise RuntimeError("combined search is not fitted: fit(data) fits the members first")
        super().fit(data)
        return self

    def _template_scores(self, data: JetSample) -> np.ndarray:
        """(n, members) member scores of a fresh background template in the SR (`combine='template'`)."""
        from jetad.searches.cathode import CathodeSearch
        from jetad.searches.inputs import feature_sample

        cathode = self.members_[self._template_member(self.members_)]
        assert isinstance(cathode, CathodeSearch)  # `_template_member` finds one
        mjj_data = data.column("mjj", data.describe("data"))
        sr_mjj = mjj_data[cathode.regions(mjj_data)[0]]
        n = max(1, round(self.template_oversampling * len(sr_mjj)))
        mjj = cathode.sample_mjj(sr_mjj, n, self.seed + 101)
        x = cathode.background_flow_.sample(n, context=mjj, seed=self.seed + 102)
        ok = np.isfinite(x).all(axis=1)
        x, mjj, names = x[ok], mjj[ok], _template_columns(cathode.features)
        if "mj2" in names[len(cathode.features):]:
            x = np.column_stack([x, x[:, names.index("mj1")] + x[:, names.index("delta_mj")]])
        template = feature_sample(x.astype(np.float32), names, mjj, source="combination template (cathode flow)")
        return np.column_stack([m.single_model_scores(template, self.seed + 103 + i)
                                for i, m in enumerate(self.members_)])

    def _view(self, sample: JetSample, checked: bool) -> DijetView:
        """The base view with each member's score of every event appended to the inputs (out-of-fold on the
        fitted sample); the combiners read those columns only."""
        view = super()._view(sample, checked)
        scores = np.column_stack([m.score(sample) for m in self.members_])
        return DijetView(x=np.column_stack([view.x.astype(np.float64), scores]), mjj=view.mjj, sr=view.sr,
                         sb=view.sb, source=view.source)

    def _scores_of(self, view: DijetView, rows: np.ndarray) -> np.ndarray:
        """(n, members) member scores of the rows."""
        return view.x[rows, -len(self.members_):]

    def _fold_strata(self, view: DijetView) -> np.ndarray:
        if self.combine == "template":  # SR data only, as CATHODE's folds
            return np.where(view.sr, 0, -1)
        return np.where(view.sr, 1, np.where(view.sb, 0, -1))

    def _fit_fold(self, view: DijetView, rows: np.ndarray, k: int) -> Any:
        scores = self._scores_of(view, rows)
        if self.combine not in ("stack", "template"):
            return {"reference": np.sort(scores, axis=0)}
        if self.combine == "template":
            x = np.concatenate([scores, self.template_scores_])
            y = np.r_[np.ones(len(scores), int), np.zeros(len(self.template_scores_), int)]
            what = "SR data vs the cathode template on the member scores"
        else:
            x, y, what = scores, view.sr[rows].astype(int), "SR vs sidebands on the member scores"
        if self.stacker in ("linear", "tail"):
            reference = np.sort(x[y == 0], axis=0)
            z = normal_scores(reference, x)
            if self.stacker == "linear":
                weights, intercept = fit_positive_logistic(z, y)
            else:
                weights, intercept = fit_tail_weights(z, y, self.tail_fractions, self.tail_steps)[0], 0.0
            return {"reference": reference, "weights": weights, "intercept": intercept}
        params = dict(self.classifier_params or {})
        if self.monotone:  # a higher member score never lowers the combined one
            params.setdefault("monotonic_cst", [1] * scores.shape[1])
        return fit_classifier(x, y, self.classifier, params or None, seed=self.seed + k,
                              what=f"{view.source}: combination fold {k} ({what})", n_ensemble=self.n_ensemble)

    def _predict(self, model: Any, view: DijetView, rows: np.ndarray) -> np.ndarray:
        scores = self._scores_of(view, rows)
        if self.combine in ("stack", "template") and self.stacker in ("linear", "tail"):
            return normal_scores(model["reference"], scores) @ np.asarray(model["weights"]) + float(model["intercept"])
        if self.combine in ("stack", "template"):
            return model.predict_proba(scores)[:, 1]
        p = tail_probabilities(model["reference"], scores)
        return 1.0 - p.mean(axis=1) if self.combine == "rank_mean" else -np.log(p.min(axis=1))

    @property
    def member_scores_(self) -> np.ndarray:
        """(N, members) out-of-fold scores of the fitted events, one column per member."""
        self._check_fitted()
        return np.column_stack([m.scores_ for m in self.members_])

    def n_parameters(self) -> int:
        """Trainable parameters of the members and of the combiners' networks."""
        return sum(m.n_parameters() for m in self.members_) + super().n_parameters()

    # -- persistence: members as nested search payloads ------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return super()._get_state() | {"members_": [m.to_payload() for m in self.members_]}

    def _restore(self, payload: dict[str, Any], path: str | Path) -> None:
        state = dict(payload["state"])
        members = state.pop("members_", None)
        if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
            raise SchemaError(f"{path}: malformed combined search file (state members_ must be a list of search "
                              f"payloads); {self.remedy}")
        super()._restore({**payload, "state": state}, path)
        self.members_ = [ResonantSearch.from_payload(m, f"{path}: member {i}") for i, m in enumerate(members)]
