"""Instrument the autoencoder's failure on svj-grid-vs-ttbar: its reconstruction error on ttbar and semivisible jets
after training on few and on many ttbar jets, and which input feature the error follows (Spearman) in each sample.

    JETAD_CACHE=/work/cache/jetad .venv/bin/python benchmarks/ae_outlier_reconstruction.py \
        --ttbar /work/cache/jetad/samples/top-7e8db19b936ac9ff --svj /work/cache/jetad/samples/svj-1a9363538134acdd

(the cache entries of the benchmark task's ttbar background, seed 301, and its m_Phi = 2 TeV, r_inv = 0.3 point;
`jetad cache list` shows them). Settings as the benchmark's full size: CMS WNAE features, quantile scaling, batch
256, up to 100 epochs, patience 10; the first 2000 ttbar jets test, the next ones train (the benchmark's split).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.stats import spearmanr

from jetad.data import read_sample
from jetad.detectors import CMS_WNAE_FEATURES, make_detector
from jetad.evaluate.metrics import auc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ttbar", required=True, help="ttbar production (>= 2000 + max(--n-train) jets)")
    ap.add_argument("--svj", required=True, help="semivisible-jet production (signal)")
    ap.add_argument("--n-train", type=lambda s: [int(v) for v in s.split(",")], default=[1000, 10000])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    ttbar, svj = read_sample(args.ttbar), read_sample(args.svj)
    test = ttbar[:2000]
    inputs = {"kind": "features", "features": list(CMS_WNAE_FEATURES), "scaling": "quantile"}
    for n in args.n_train:
        det = make_detector("ae", inputs=inputs, epochs=100, batch_size=256, patience=10, seed=args.seed)
        det.fit(ttbar[2000:2000 + n])
        e_bkg, e_sig = det.score(test), det.score(svj)
        row = {"n_train": n, "auc_unweighted": auc(e_sig, e_bkg), "median_error_ttbar": float(np.median(e_bkg)),
               "median_error_svj": float(np.median(e_sig)),
               "spearman_error_feature": {f: {"ttbar": float(spearmanr(e_bkg, test.features[f])[0]),
                                              "svj": float(spearmanr(e_sig, svj.features[f])[0])}
                                          for f in CMS_WNAE_FEATURES}}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
