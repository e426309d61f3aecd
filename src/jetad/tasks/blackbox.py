"""LHC Olympics-style black boxes: QCD dijets with a hidden number of signal events, analysed blind (2101.08320).

`make_blackbox` mixes dijet events from jetad files made with the ``lhco-bkg`` and ``lhco-sig`` processes,
shuffles them with a seed, and writes them in the public LHCO event layout read by
`jetad.data.formats.lhco` (a pandas DataFrame under key ``df``: per event up to 700 particles as
``pT1, eta1, phi1, pT2, ...`` [GeV], zero-padded) - without a label column. Which rows are signal, and of
which decay mode, goes to a separate key file, so the box can be converted and searched without seeing the truth.

Three kinds, as the three boxes of the 2020 challenge (2101.08320, section 2):

- ``one``: one signal (any W' -> X Y masses, or W' -> q q) in the nominal background (black box 1).
- ``empty-mismodelled``: no signal, and a background from another simulation than the nominal one (an
  ``lhco-bkg`` production with a ``tune`` option, `jetad.generate.processes.LHCO_BKG_TUNES`), so that a
  method calibrated on nominal simulation meets mis-modelled data (black box 2 used Herwig for this).
- ``two-modes``: one resonance seen in two decay modes (two signal files, e.g. ``lhco-sig`` with
  ``decay="qq"`` and ``decay="xy"``), mixed with given fractions (black box 3 had a dijet and a trijet mode).

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jetad import __version__
from jetad.data.progress import Progress
from jetad.data.sample import JetSample, SchemaError
from jetad.data.store import iter_samples, sample_info
from jetad.generate.processes import LHCO_BKG_TUNES, NOMINAL_TUNE

__all__ = [
    "BLACKBOX_KINDS",
    "KEY_SCHEMA",
    "KEY_SCHEMA_VERSION",
    "LHCO_MAX_PARTICLES",
    "background_tune",
    "blackbox_labels",
    "blackbox_modes",
    "check_kind",
    "key_path",
    "make_blackbox",
    "merged_particles",
    "read_key",
    "signal_mode_name",
]

KEY_SCHEMA = "jetad.BlackBoxKey"
#: 2: adds ``kind``, ``modes``, ``mode_rows`` and the background's ``tune``; version-1 keys (no
#: ``schema_version``) are read as kind ``one`` with a single mode named ``signal``.
KEY_SCHEMA_VERSION = 2
BLACKBOX_KINDS = ("one", "empty-mismodelled", "two-modes")
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
    sig_path: str | Path | Sequence[str | Path] | None,
    n_bkg: int,
    n_sig: int | str,
    out: str | Path,
    key_out: str | Path | None = None,
    seed: int = 0,
    secret_range: tuple[int, int] = (0, 1500),
    max_particles: int = LHCO_MAX_PARTICLES,
    progress: Progress | None = None,
    kind: str = "one",
    mode_fraction: float = 0.5,
) -> Path:
    """Write an LHCO-layout black box of QCD dijets plus signal, and its key file; returns the box path.

    Arguments:
        bkg_path: a jetad dijet file or shard directory (``jetad generate lhco-bkg``).
        sig_path: the same for the signal (``lhco-sig``); None when no signal is injected; for kind
            ``two-modes`` a pair of files, one per decay mode.
        n_bkg: background events drawn (without replacement, seeded) from `bkg_path`. With ``n_sig="secret"``
            this is the total size of the box, so the row count does not give the signal away.
        n_sig: signal events (0: a background-only box), or "secret": drawn uniformly from `secret_range`
            with the seed and written only to the key file (any other string is a ValueError).
        out: the box (``.h5``); key_out: the key (JSON; default ``out`` with suffix ``.key.json``).
        seed: seeds the row choice, the secret n_sig and the shuffle; the same seed gives the same box.
        max_particles: particles per event in the box (700 in the LHCO files).
        kind: one of `BLACKBOX_KINDS` (module docstring); ``empty-mismodelled`` checks, from the file's
            attributes, that the background is a mis-modelled ``lhco-bkg`` production (`background_tune`).
        mode_fraction: kind ``two-modes``: the fraction of the signal events from the first file (rounded).

    Both files are written under temporary names and renamed when complete, the key first: a box that exists
    always has its key. Raises ValueError for impossible counts or a kind its inputs do not fit (naming the
    file or option), SchemaError for non-dijet inputs.
    """
    out = Path(out)
    key_out = key_path(out, key_out)
    signals = _signal_paths(sig_path)
    _check_paths(out, key_out, [Path(bkg_path), *signals])
    check_kind(kind, signals, n_sig, mode_fraction)
    rng = np.random.default_rng(seed)
    n_bkg_int, n_sig_int, secret = _counts(n_bkg, n_sig, secret_range, rng)
    if n_sig_int > 0 and not signals:
        raise ValueError(f"n_sig = {n_sig_int} signal events requested but no signal file given")
    bkg_tune = background_tune(sample_info(bkg_path).attrs)
    if kind == "empty-mismodelled":
        _check_mismodelled(Path(bkg_path), bkg_tune)
    first = round(mode_fraction * n_sig_int) if len(signals) == 2 else n_sig_int
    split = [first, n_sig_int - first][: len(signals)]
    names = ["signal"] if len(signals) == 1 else [f"signal_{i + 1}" for i in range(len(signals))]
    inputs = [("background", Path(bkg_path), n_bkg_int), *zip(names, signals, split, strict=False)]

    sources: dict[str, dict[str, Any]] = {}
    blocks, origin, source_rows = [], [], []
    for index, (name, path, count) in enumerate(inputs):
        if count == 0:
            continue
        particles, rows, sources[name] = _draw(path, count, name, rng, max_particles)
        blocks.append(particles)
        origin.append(np.full(count, index))
        source_rows.append(rows)
    width = max(b.shape[1] for b in blocks)
    particles = np.concatenate([np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0))) for b in blocks])
    perm = rng.permutation(len(particles))
    particles, source, rows = particles[perm], np.concatenate(origin)[perm], np.concatenate(source_rows)[perm]
    if (particles[:, :, 0] <= 0).all(axis=1).any():
        raise SchemaError(f"{bkg_path} / {sig_path}: an input event has no constituents")
    if "background" in sources:
        sources["background"]["tune"] = bkg_tune

    modes = _modes(names, signals, split, source)
    key = {
        "schema": KEY_SCHEMA, "schema_version": KEY_SCHEMA_VERSION, "kind": kind, "box": out.name,
        "n_events": len(particles), "n_bkg": n_bkg_int, "n_sig": n_sig_int, "n_sig_secret": secret,
        "secret_range": list(secret_range) if secret else None, "seed": int(seed), "max_particles": max_particles,
        "background_tune": bkg_tune, "sources": sources,
        "signal_rows": np.flatnonzero(source > 0).tolist(),
        "modes": [{k: v for k, v in m.items() if k != "rows"} for m in modes],
        "mode_rows": {m["name"]: m["rows"] for m in modes},
        "source_rows": rows.tolist(),
        "particles": "constituents of the two leading jets of each jetad dijet event, merged and pT-sorted",
        "jetad_version": __version__,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    _write_atomically(out, key_out, key, particles, max_particles, progress)
    return out


def _signal_paths(sig_path: str | Path | Sequence[str | Path] | None) -> list[Path]:
    """The signal files as a list (none, one, or a pair for two modes)."""
    if sig_path is None:
        return []
    if isinstance(sig_path, str | Path):
        return [Path(sig_path)]
    return [Path(p) for p in sig_path]


def _check_paths(out: Path, key_out: Path, inputs: list[Path]) -> None:
    if key_out.resolve() == out.resolve():
        raise ValueError(f"{out}: the box and its key would be the same file; give another key path")
    for src in inputs:
        if src.resolve() in (out.resolve(), key_out.resolve()):
            raise ValueError(f"{src}: is an input of the box; writing the box or key there would overwrite it")


def check_kind(kind: str, signals: Sequence[str | Path], n_sig: int | str, mode_fraction: float = 0.5) -> None:
    """A ValueError naming the option when the signal files, n_sig and mode_fraction do not make a box of this
    `kind` (the file contents are checked by `make_blackbox`)."""
    paths = [Path(p) for p in signals]
    if kind not in BLACKBOX_KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(BLACKBOX_KINDS)}")
    if kind == "empty-mismodelled" and (signals or n_sig != 0):
        raise ValueError(f"kind 'empty-mismodelled' holds no signal: give n_sig 0 and no signal file "
                         f"(got n_sig={n_sig!r}, {len(signals)} signal file(s))")
    if kind == "one" and len(signals) > 1:
        raise ValueError(f"kind 'one' takes one signal file, got {len(signals)}; use kind 'two-modes' for two")
    if kind == "two-modes":
        if len(signals) != 2:
            raise ValueError(f"kind 'two-modes' takes two signal files (one per decay mode), got {len(signals)}")
        if paths[0].resolve() == paths[1].resolve():
            raise ValueError(f"{paths[0]}: given as both signal modes; kind 'two-modes' needs two signal files")
        if not 0.0 < float(mode_fraction) < 1.0:
            raise ValueError(f"mode_fraction {mode_fraction!r} (signal fraction in the first mode) must be in (0, 1)")


def _counts(n_bkg: int, n_sig: int | str, secret_range: tuple[int, int], rng: np.random.Generator
            ) -> tuple[int, int, bool]:
    """(background events, signal events, whether n_sig is secret); a secret n_sig is drawn from `rng`."""
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
    return n_bkg_int, n_sig_int, secret


def background_tune(attrs: dict[str, Any]) -> str | None:
    """The simulation of a background file from its attributes: the ``lhco-bkg`` ``tune`` option (the nominal
    'monash' when absent), or None when the file does not say (not an ``lhco-bkg`` production)."""
    if attrs.get("process") != "lhco-bkg":
        return None
    options = attrs.get("process_options") or {}
    return str(options.get("tune", NOMINAL_TUNE)) if isinstance(options, dict) else None


def _check_mismodelled(path: Path, tune: str | None) -> None:
    variants = ", ".join(t for t in LHCO_BKG_TUNES if t != NOMINAL_TUNE)
    if tune is None:
        raise ValueError(f"{path}: its attributes do not say which simulation made it (not an 'lhco-bkg' "
                         f"production); kind 'empty-mismodelled' needs an lhco-bkg background with option tune "
                         f"= one of {variants}")
    if tune == NOMINAL_TUNE:
        raise ValueError(f"{path}: is the nominal background simulation (lhco-bkg tune {NOMINAL_TUNE!r}); kind "
                         f"'empty-mismodelled' needs one generated with option tune = one of {variants}")


def _draw(path: Path, count: int, name: str, rng: np.random.Generator, max_particles: int
          ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """`count` seeded rows of one input: their merged particles, the row numbers, and the source record."""
    info = sample_info(path)
    if count > info.n_jets:
        raise ValueError(f"{path}: {count} {name} events requested but the file has {info.n_jets}")
    rows = np.sort(rng.choice(info.n_jets, size=count, replace=False))
    particles, attrs = _select_rows(path, rows, max_particles, name)
    record = {
        "path": str(path), "n_available": info.n_jets, "n_used": count, "process": attrs.get("process"),
        "process_options": attrs.get("process_options"), "seed": attrs.get("seed"),
        "production_hash": attrs.get("production_hash"),
    }
    return particles, rows, record


def signal_mode_name(attrs: dict[str, Any] | None) -> str:
    """A decay mode's name from its file's attributes: the ``lhco-sig`` ``decay`` option ('xy' when absent),
    else the process, else 'signal'."""
    attrs = attrs or {}
    options = attrs.get("process_options")
    options = options if isinstance(options, dict) else {}
    if attrs.get("process") == "lhco-sig":
        return str(options.get("decay", "xy"))
    return str(attrs.get("process") or "signal")


def _modes(names: list[str], signals: list[Path], split: list[int], source: np.ndarray) -> list[dict[str, Any]]:
    """One record per signal mode: name (`signal_mode_name`), source, events, fraction, options, box rows."""
    attrs = [sample_info(path).attrs for path in signals]
    labels = [signal_mode_name(a) for a in attrs]
    if len(labels) == 2 and labels[0] == labels[1]:
        labels = [f"{label}_{i + 1}" for i, label in enumerate(labels)]
    total = max(sum(split), 1)
    return [{"name": label, "source": name, "path": str(path), "n_sig": count, "fraction": count / total,
             "process": a.get("process"), "process_options": a.get("process_options"),
             "rows": np.flatnonzero(source == i + 1).tolist()}
            for i, (label, name, path, count, a) in enumerate(zip(labels, names, signals, split, attrs, strict=True))]


def _write_atomically(out: Path, key_out: Path, key: dict[str, Any], particles: np.ndarray, max_particles: int,
                      progress: Progress | None) -> None:
    """The key then the box, each under a temporary name renamed when complete (a box always has its key)."""
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
    version = key.get("schema_version", 1)
    if not isinstance(version, int) or not 1 <= version <= KEY_SCHEMA_VERSION:
        raise SchemaError(f"{path}: key schema_version {version!r} is not one this jetad reads "
                          f"(1 to {KEY_SCHEMA_VERSION}); upgrade jetad")
    return _upgraded(key) if version == 1 else key


def _upgraded(key: dict[str, Any]) -> dict[str, Any]:
    """A version-1 key with the version-2 fields: kind 'one', a single mode 'signal' (when it has signal)."""
    signal = key.get("sources", {}).get("signal")
    modes = [] if not key.get("signal_rows") else [
        {"name": "signal", "source": "signal", "path": (signal or {}).get("path"), "n_sig": key.get("n_sig"),
         "fraction": 1.0, "process_options": None}]
    return {**key, "kind": "one", "background_tune": None, "modes": modes,
            "mode_rows": {"signal": list(key["signal_rows"])} if modes else {}}


def blackbox_labels(key: str | Path | dict[str, Any], rows: np.ndarray | None = None) -> np.ndarray:
    """1 for signal, 0 for background, per box row (or for the given box rows, e.g. ``event["source_row"]``
    of a converted box, which drops events without two jets)."""
    key = read_key(key) if not isinstance(key, dict) else key
    labels = np.zeros(key["n_events"], dtype=np.int64)
    labels[np.asarray(key["signal_rows"], dtype=np.int64)] = 1
    return labels if rows is None else labels[np.asarray(rows, dtype=np.int64)]


def blackbox_modes(key: str | Path | dict[str, Any], rows: np.ndarray | None = None) -> np.ndarray:
    """The truth per box row (or for the given box rows): 'background' or the name of the signal's decay mode
    (the key's ``modes``, e.g. 'qq' and 'xy' in a two-modes box, 'signal' in a box of kind one)."""
    key = read_key(key) if not isinstance(key, dict) else key
    names = ["background", *key["mode_rows"]]
    index = np.zeros(key["n_events"], dtype=np.int64)
    for i, mode_rows in enumerate(key["mode_rows"].values()):
        index[np.asarray(mode_rows, dtype=np.int64)] = i + 1
    modes = np.asarray(names, dtype=object)[index]
    return modes if rows is None else modes[np.asarray(rows, dtype=np.int64)]
