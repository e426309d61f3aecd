"""Readers that turn public jet data formats into `JetSample` chunks, and `convert` to a jetad file.

Supported (see each module for the exact layout):

- ``lhco``: LHC Olympics 2020 R&D / black-box event files (pandas HDF5, 700 x (pT, eta, phi) [+ label]),
  clustered here into anti-kT R=1.0 dijets (2101.08320).
- ``toptag``: the top-tagging reference data set (pandas HDF5, 200 x (E, px, py, pz) + is_signal_new)
  (1902.09914).
- ``nanoaod``: CMS NanoAOD / PFNano ROOT files (FatJet + PFCands + FatJetPFCands mapping), one row per
  fat jet.

Every reader streams: it reads row ranges of the source, never the whole file, and raises `SchemaError`
naming the file and the problem for malformed input. No reader runs code from a file: pandas HDF5 files are
read with h5py (`pandas_hdf`), object-typed (pickled) nodes are refused, and values are checked to be
physical (`source.check_physical`: finite, |eta| <= 10, 0 <= pT/E <= 100 TeV, m^2 >= 0 up to rounding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jetad.data.formats.pandas_hdf import PandasHDFFrame
from jetad.data.formats.reader import FormatReader
from jetad.data.formats.source import HDF5_SIGNATURE, ROOT_SIGNATURE, _signature, check_source_file
from jetad.data.progress import Progress
from jetad.data.sample import SchemaError
from jetad.data.store import SampleWriter

__all__ = [
    "FORMATS",
    "HDF5_SIGNATURE",
    "ROOT_SIGNATURE",
    "FormatReader",
    "PandasHDFFrame",
    "check_format",
    "check_source_file",
    "convert",
    "detect_format",
    "open_reader",
]

FORMATS = ("lhco", "toptag", "nanoaod")


def check_format(fmt: str | None) -> str | None:
    """`fmt` if it is None (detect) or one of FORMATS; else a SchemaError naming the option and the choices."""
    if fmt is not None and fmt not in FORMATS:
        raise SchemaError(f"unknown format {fmt!r} (option --format / fmt=); choose one of: {', '.join(FORMATS)}, "
                          "or leave it out to detect the format from the file")
    return fmt


def _readers() -> dict[str, type[FormatReader]]:
    from jetad.data.formats.lhco import LHCOReader
    from jetad.data.formats.nanoaod import NanoAODReader
    from jetad.data.formats.toptag import TopTagReader

    return {"lhco": LHCOReader, "toptag": TopTagReader, "nanoaod": NanoAODReader}


def _require_pandas_hdf(path: Path) -> None:
    """SchemaError when an HDF5 file holds no pandas DataFrame (a jetad file, or some other HDF5 layout)."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("schema") in ("jetad.JetSample", b"jetad.JetSample"):
                raise SchemaError(f"{path}: already a jetad file; read it with jetad.data.read_sample")
            frames = []
            h5.visititems(lambda name, obj: frames.append(name) if "pandas_type" in obj.attrs else None)
    except OSError as err:
        raise SchemaError(f"{path}: cannot be opened as HDF5 (truncated or corrupt?): {err}") from err
    if not frames:
        raise SchemaError(
            f"{path}: an HDF5 file without a pandas DataFrame; readable HDF5 formats are the LHCO "
            "(key 'df', 3 x n particle columns [+ label]) and top-tagging (key 'table', E_0, PX_0, ...) "
            "files written with DataFrame.to_hdf"
        )


def detect_format(path: str | Path) -> str:
    """'nanoaod' for ROOT files, 'toptag' for pandas HDF5 with key 'table' and column E_0, else 'lhco'.

    The content decides (file signature, keys, columns); the extension only sharpens the error message.
    """
    path = check_source_file(path)
    head = _signature(path)
    if head[:4] == ROOT_SIGNATURE:
        return "nanoaod"
    if head == HDF5_SIGNATURE:
        _require_pandas_hdf(path)
        frame = PandasHDFFrame(path, prefer=("table", "df"))
        try:
            return "toptag" if frame.key == "table" and "E_0" in frame.columns else "lhco"
        finally:
            frame.close()
    kind = (
        "ROOT"
        if path.suffix.lower() == ".root"
        else "HDF5"
        if path.suffix.lower() in (".h5", ".hdf5")
        else ""
    )
    what = f"named like a {kind} file but " if kind else ""
    raise SchemaError(
        f"{path}: {what}neither an HDF5 nor a ROOT file (truncated or another format?); readable formats: "
        "LHCO / top-tagging pandas HDF5 (DataFrame.to_hdf) and NanoAOD ROOT"
    )


def open_reader(path: str | Path, fmt: str | None = None, **options: Any) -> FormatReader:
    """The reader for `path` (format auto-detected unless `fmt` is one of FORMATS), opened and validated."""
    checked = check_format(fmt)
    name = detect_format(path) if checked is None else checked
    return _readers()[name](path, **options)


def convert(
    src: str | Path,
    out: str | Path,
    fmt: str | None = None,
    chunk_size: int = 10_000,
    progress: Progress | None = None,
    **options: Any,
) -> Path:
    """Convert a public-format file to a jetad HDF5 file, streaming `chunk_size` source rows at a time.

    The output is written atomically (``out.tmp``, renamed when complete) and carries provenance: source
    file name, format, layout and size, the conversion options, the jet definition and the reader's
    counters (events read, events dropped and why). `progress(done, total, {})` is called with source rows.
    `options` go to the format's reader (see `LHCOReader`, `TopTagReader`, `NanoAODReader`).
    """
    check_format(fmt)
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise SchemaError(f"chunk_size (option --chunk-size) must be a positive number of rows, got {chunk_size!r}")
    with open_reader(src, fmt, **options) as reader:
        written = 0
        with SampleWriter(out, reader.provenance()) as writer:
            if progress is not None:
                progress(0, reader.n_rows, {})
            for done, sample in reader.chunks(chunk_size):
                writer.append(sample)
                written += len(sample)
                if progress is not None:
                    progress(done, reader.n_rows, {})
            if written == 0:
                raise SchemaError(
                    f"{reader.path}: no jets passed the selection; nothing to write ({reader.stats})"
                )
            # The counters are known only after the last chunk; SampleWriter writes attrs at close().
            writer.update_attrs(reader.stats)
    return Path(out)
