"""Weakly supervised resonant searches (LHC Olympics, 2101.08320) on the one estimator contract.

`make_search(name, **params)` builds one by registry name; `fit(data)` learns from the data alone (cross-fitted,
see `jetad.searches.base`); `score(data)` gives per-event anomaly scores for the bump hunt; `save` / `load`
use the same model-file format as the detectors. Adding a search is one new module with `@register` and one
import line here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jetad.data.model_file import read_model_payload
from jetad.data.sample import SchemaError
from jetad.detectors.estimator import REGISTRIES, Estimator
from jetad.searches import (  # noqa: F401  (register the searches)
    cathode,
    combined,
    cwola,
    emd_ae,
    gan_ae,
    gis,
    graph_ae,
    lacathode,
    latent_vae,
    lund_lda,
    pca,
    quak,
    regularized_likelihood,
    salad,
    supervised,
    tag_n_train,
    topics,
    ucluster,
    vrnn,
)
from jetad.searches.base import ResonantSearch
from jetad.searches.inputs import DEFAULT_SEARCH_FEATURES

__all__ = ["DEFAULT_SEARCH_FEATURES", "SEARCHES", "ResonantSearch", "is_search_file", "load_model", "load_search",
           "make_search"]

#: Registered searches by name (the search part of `REGISTRIES`).
SEARCHES: dict[str, type[ResonantSearch]] = REGISTRIES["search"]  # type: ignore[assignment]


def make_search(name: str, **params: Any) -> ResonantSearch:
    """A search by registry name ('cwola', 'cathode', 'tag_n_train', 'quak') with constructor parameters, checked
    against its constructor first (`jetad.detectors.check_params`)."""
    from jetad.detectors import check_params

    if name not in SEARCHES:
        raise ValueError(f"unknown search {name!r}; choose one of {', '.join(sorted(SEARCHES))}")
    check_params(SEARCHES[name], params, name)
    return SEARCHES[name](**params)


def load_search(path: str | Path) -> ResonantSearch:
    """A search saved with `ResonantSearch.save`; `score(sample)` then works on new events (fold-model mean)."""
    return ResonantSearch.load(path)


def is_search_file(path: str | Path) -> bool:
    """Whether `path` holds a saved search (as opposed to a detector); False for unreadable files."""
    try:
        return read_model_payload(path).get("format") == ResonantSearch.model_format()
    except (SchemaError, FileNotFoundError):
        return False


def load_model(path: str | Path) -> Estimator:
    """A saved detector or a saved search, whichever the file holds (read once); both have `score(sample)`."""
    from jetad.detectors.base import Detector

    payload = read_model_payload(path)
    kind = ResonantSearch if payload.get("format") == ResonantSearch.model_format() else Detector
    return kind.from_payload(payload, path)
