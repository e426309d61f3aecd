"""How much a representation still knows about a nuisance (e.g. the jet mass), measured after training.

Two post-hoc probes on frozen arrays, per background class: a ridge regression of the nuisance from the
representation (held-out R^2), and a classifier trained to convergence to tell real (r, z) pairs from pairs with
z shuffled within the class (held-out AUC; 0.5 = independent). They check NuRD's claim (2107.00520) that the
distilled representation is independent of the nuisance given the class.
"""

from __future__ import annotations

import numpy as np

from jetad.evaluate.metrics import auc

__all__ = ["nuisance_dependence"]


def nuisance_dependence(r: np.ndarray, y: np.ndarray, z: np.ndarray, seed: int = 0,
                        names: dict[int, str] | None = None) -> dict[str, dict[str, float]]:
    """Per class of `y`: held-out R^2 of z from r (ridge) and AUC of a converged real-vs-shuffled classifier.

    Arguments:
        r: (N, D) representations; y: (N,) class labels; z: (N,) nuisance values.
    Returns {class name: {"r2": ..., "critic_auc": ..., "n": ...}}; half of each class fits, half tests.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import RidgeCV

    r, y, z = np.asarray(r, np.float64), np.asarray(y), np.asarray(z, np.float64)
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        fit, test = rows[: len(rows) // 2], rows[len(rows) // 2:]
        ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(r[fit], z[fit])
        resid = z[test] - ridge.predict(r[test])
        r2 = 1.0 - float(resid @ resid) / max(float(((z[test] - z[test].mean()) ** 2).sum()), 1e-300)
        pairs = {part: (np.c_[r[idx], z[idx]], np.c_[r[idx], z[rng.permutation(idx)]]) for part, idx in
                 (("fit", fit), ("test", test))}
        x_fit = np.concatenate(pairs["fit"])
        clf = HistGradientBoostingClassifier(max_iter=300, early_stopping=True, random_state=seed).fit(
            x_fit, np.r_[np.ones(len(fit)), np.zeros(len(fit))])
        real, fake = (clf.predict_proba(p)[:, 1] for p in pairs["test"])
        out[(names or {}).get(int(c), str(c))] = {"r2": r2, "critic_auc": auc(real, fake), "n": float(len(rows))}
    return out
