"""The linear-classifier probe of a representation (JetCLR 2108.04253, Sec. 4): how linearly separable two
labelled classes are in it. A measure of representation quality that uses labels, so never part of training.
"""

from __future__ import annotations

import numpy as np

from jetad.evaluate.metrics import auc, rejection_at

__all__ = ["linear_probe_auc"]


def linear_probe_auc(train_sig: np.ndarray, train_bkg: np.ndarray, test_sig: np.ndarray,
                     test_bkg: np.ndarray) -> dict[str, float]:
    """Logistic regression on standardized (N, D) representations: test AUC and inverse mistag 1/eps_b at
    eps_s = 0.5."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([train_sig, train_bkg])
    y = np.r_[np.ones(len(train_sig)), np.zeros(len(train_bkg))]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(x, y)
    s_sig, s_bkg = clf.decision_function(test_sig), clf.decision_function(test_bkg)
    return {"auc": auc(s_sig, s_bkg), "inverse_mistag_50": rejection_at(s_sig, s_bkg, 0.5)[0.5]}
