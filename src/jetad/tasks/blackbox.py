"""LHC Olympics-style black boxes: QCD dijets with a hidden number of signal events, analysed blind (2101.08320).

`make_blackbox` mixes dijet events from jetad files made with the ``lhco-bkg`` and ``lhco-sig`` processes,
shuffles them with a seed, and writes them in the public LHCO event layout read by
`jetad.data.formats.lhco` (a pandas DataFrame under key ``df``: per event up to 700 particles as
``pT1, eta1, phi1, pT2, ...`` [GeV], zero-padded) - without a label column. Which rows are signal goes to a
separate key file, so the box can be converted and searched without seeing the truth.

Simplification: the jetad dijet files keep only the (pT-leading, up to P) constituents of the two leading
jets, so the box holds those particles, merged and pT-sorted; the real LHCO boxes hold every particle of the
event. Re-clustering the box (anti-kT R = 1.0) gives back the two jets up to these truncations.
The DataFrame is written in pandas "table" format (appendable, streamed in chunks; the public files use
"fixed"; the LHCO reader reads both).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from jetad import __version__
from jetad.data.progress import Progress
from jetad.data.sample import JetSample, SchemaError
from jetad.data.store import iter_samples, sample_info

__all__ = [
    "KEY_SCHEMA",
    "LHCO_MAX_PARTICLES",
    "blackbox_labels",
    "key_path",
    "make_blackbox",
    "merged_particles",
    "read_key",
]

KEY_SCHEMA = "jetad.BlackBoxKey"
LHCO_MAX_PARTICLES = 700
#: The standard LHCO R&D high-level features (CATHODE 2109.00546): mjj, lighter jet mass, mass difference, tau21s.
_WRITE_ROWS = 5000


def merged_particles(sample: JetSample, max_particles: int = LHCO_MAX_PARTICLES) -> np.ndarray:
    """(N, K, 3) float32 (pT, eta, phi) of both leading jets' constituents, pT-sorted, zero-padded; K <= max.

    The sample must be a dijet sample (event columns ``j2_constituents`` and ``j2_mask``).
    """
    if "j2_constituents" not in sample.event or "j2_mask" not in sample.event:
        raise SchemaError(
            f"{sample.describe()}: not a dijet sample (event/j2_constituents, event/j2_mask missing); black boxes "
            "are made from 'lhco-bkg' / 'lhco-sig' productions or converted LHCO files"
        )
    parts = np.concatenate([sample.constituents[..., :3], np.asarray(sample.event["j2_constituents"])[..., :3]], 1)
    mask = np.concatenate([sample.mask, np.asarray(sample.event["j2_mask"], dtype=bool)], axis=1)
    pt = np.where(mask, parts[..., 0], 0.0)
    order = np.argsort(-pt, axis=1, kind="stable")
    parts = np.take_along_axis(parts * mask[..., None], order[..., None], axis=1)
    k = min(max_particles, max(int(mask.sum(axis=1).max(initial=0)), 1))
    return parts[:, :k].astype(np.float32)


def _select_rows(
    path: Path, rows: np.ndarray, max_particles: int, what: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """Merged particles of the given (sorted) rows of a jetad file or shard directory, read chunk by chunk."""
    out = []
    offset = 0
    attrs: dict[str, Any] = {}
    for chunk in iter_samples(path, chunk_size=20_000):
        attrs = attrs or chunk.attrs
        lo, hi = np.searchsorted(rows, [offset, offset + len(chunk)])
        if hi > lo:
            out.append(merged_particles(chunk.subset(rows[lo:hi] - offset), max_particles))
        offset += len(chunk)
    if not out:
        raise SchemaError(f"{path}: no {what} rows read")
    width = max(p.shape[1] for p in out)
    return np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0))) for p in out]), attrs


def _write_box(tmp: Path, particles: np.ndarray, max_particles: int, progress: Progress | None):
    import pandas as pd

    n = len(particles)
    with pd.HDFStore(tmp, mode="w", complevel=1, complib="blosc:lz4") as store:
        for start in range(0, n, _WRITE_ROWS):
            block = np.zeros((min(n, start + _WRITE_ROWS) - start, max_particles, 3))
            chunk = particles[start : start + _WRITE_ROWS]
            block[:, : chunk.shape[1]] = chunk
            frame = pd.DataFrame(block.reshape(len(block), -1), index=np.arange(start, start + len(block)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
                store.append("df", frame)
            if progress is not None:
                progress(start + len(block), n, {})


def make_blackbox(
    bkg_path: str | Path,
    sig_path: str | Path | None,
    n_bkg: int,
    n_sig: int | str,
    out: str | Path,
    key_out: str | Path | None = None,
    seed: int = 0,
    secret_range: tuple[int, int] = (0, 1500),
    max_particles: int = LHCO_MAX_PARTICLES,
    progress: Progress | None = None,
) -> Path:
    """Write an LHCO-layout black box of QCD dijets plus signal, and its key file; returns the box path.

    Arguments:
        bkg_path: a jetad dijet file or shard directory (``jetad generate lhco-bkg``).
        sig_path: the same for the signal (``lhco-sig``); may be None when no signal is injected.
        n_bkg: background events drawn (without replacement, seeded) from `bkg_path`. With ``n_sig="secret"``
            this is the total size of the box, so the row count does not give the signal away.
        n_sig: signal events (0: a background-only box), or "secret": drawn uniformly from `secret_range`
            with the seed and written only to the key file (any other string is a ValueError).
        out: the box (``.h5``); key_out: the key (JSON; default ``out`` with suffix ``.key.json``).
        seed: seeds the row choice, the secret n_sig and the shuffle; the same seed gives the same box.
        max_particles: particles per event in the box (700 in the LHCO files).

    Both files are written under temporary names and renamed when complete, the key first: a box that exists
    always has its key. Raises ValueError for impossible counts, SchemaError for non-dijet inputs.
    """
    out = Path(out)
    key_out = key_path(out, key_out)
    if key_out.resolve() == out.resolve():
        raise ValueError(f"{out}: the box and its key would be the same file; give another key path")
    for src in (bkg_path, sig_path):
        if src is not None and Path(src).resolve() in (out.resolve(), key_out.resolve()):
            raise ValueError(f"{src}: is an input of the box; writing the box or key there would overwrite it")
    rng = np.random.default_rng(seed)
    secret = isinstance(n_sig, str)
    if secret:
        if n_sig != "secret":
            raise ValueError(f"n_sig must be a number of events or 'secret', got {n_sig!r}")
        lo, hi = secret_range
        if not 0 <= lo <= hi <= n_bkg:
            raise ValueError(f"secret_range {secret_range} must satisfy 0 <= lo <= hi <= n_bkg = {n_bkg}")
        n_sig_int = int(rng.integers(lo, hi + 1))
        n_bkg_int = int(n_bkg) - n_sig_int
    else:
        n_sig_int, n_bkg_int = int(n_sig), int(n_bkg)
    if n_bkg_int < 0 or n_sig_int < 0 or n_bkg_int + n_sig_int == 0:
        raise ValueError(f"need n_bkg >= 0, n_sig >= 0 and at least one event (n_bkg={n_bkg}, n_sig={n_sig})")
    if n_sig_int > 0 and sig_path is None:
        raise ValueError(f"n_sig = {n_sig_int} signal events requested but no signal file given")

    sources: dict[str, dict[str, Any]] = {}
    blocks, is_signal, source_rows = [], [], []
    inputs: list[tuple[str, str | Path | None, int]] = [("background", bkg_path, n_bkg_int),
                                                        ("signal", sig_path, n_sig_int)]
    for name, src, count in inputs:
        if count == 0 or src is None:
            continue
        path = Path(src)
        info = sample_info(path)
        if count > info.n_jets:
            raise ValueError(f"{path}: {count} {name} events requested but the file has {info.n_jets}")
        rows = np.sort(rng.choice(info.n_jets, size=count, replace=False))
        particles, attrs = _select_rows(path, rows, max_particles, name)
        blocks.append(particles)
        is_signal.append(np.full(count, name == "signal"))
        source_rows.append(rows)
        sources[name] = {
            "path": str(path), "n_available": info.n_jets, "n_used": count, "process": attrs.get("process"),
            "seed": attrs.get("seed"), "production_hash": attrs.get("production_hash"),
        }
    width = max(b.shape[1] for b in blocks)
    particles = np.concatenate([np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0))) for b in blocks])
    perm = rng.permutation(len(particles))
    particles, signal, rows = particles[perm], np.concatenate(is_signal)[perm], np.concatenate(source_rows)[perm]
    if (particles[:, :, 0] <= 0).all(axis=1).any():
        raise SchemaError(f"{bkg_path} / {sig_path}: an input event has no constituents")

    key = {
        "schema": KEY_SCHEMA, "box": out.name, "n_events": len(particles), "n_bkg": n_bkg_int,
        "n_sig": n_sig_int, "n_sig_secret": secret, "secret_range": list(secret_range) if secret else None,
        "seed": int(seed), "max_particles": max_particles, "sources": sources,
        "signal_rows": np.flatnonzero(signal).tolist(),
        "source_rows": rows.tolist(),
        "particles": "constituents of the two leading jets of each jetad dijet event, merged and pT-sorted",
        "jetad_version": __version__,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    key_out.parent.mkdir(parents=True, exist_ok=True)
    box_tmp, key_tmp = out.with_name(out.name + ".tmp"), key_out.with_name(key_out.name + ".tmp")
    try:
        key_tmp.write_text(json.dumps(key, indent=1))
        _write_box(box_tmp, particles, max_particles, progress)
        os.replace(key_tmp, key_out)
        os.replace(box_tmp, out)
    except BaseException:
        box_tmp.unlink(missing_ok=True)
        key_tmp.unlink(missing_ok=True)
        raise
    return out


def key_path(out: str | Path, key_out: str | Path | None = None) -> Path:
    """Where `make_blackbox` writes the key of box `out`: `key_out`, or `out` with suffix ``.key.json``."""
    return Path(key_out) if key_out is not None else Path(out).with_suffix(".key.json")


def read_key(path: str | Path) -> dict[str, Any]:
    """The key file of a black box, checked to be one."""
    path = Path(path)
    try:
        key = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such key file") from None
    except json.JSONDecodeError as err:
        raise SchemaError(f"{path}: not valid JSON ({err})") from err
    if key.get("schema") != KEY_SCHEMA:
        raise SchemaError(f"{path}: not a black-box key (schema={key.get('schema')!r})")
    return key


def blackbox_labels(key: str | Path | dict[str, Any], rows: np.ndarray | None = None) -> np.ndarray:
    """1 for signal, 0 for background, per box row (or for the given box rows, e.g. ``event["source_row"]``
    of a converted box, which drops events without two jets)."""
    key = read_key(key) if not isinstance(key, dict) else key
    labels = np.zeros(key["n_events"], dtype=np.int64)
    labels[np.asarray(key["signal_rows"], dtype=np.int64)] = 1
    return labels if rows is None else labels[np.asarray(rows, dtype=np.int64)]
