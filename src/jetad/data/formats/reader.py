"""The base of every public-format reader: a file read as JetSample chunks, with its provenance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jetad.data.formats.source import check_source_file
from jetad.data.sample import JetSample, SchemaError

__all__ = ["FormatReader"]


class FormatReader:
    """A public-format file read as JetSample chunks.

    Subclasses open and validate the file layout in ``__init__`` (setting `n_rows`, `options`, `layout` and
    the jet definition in `jet_attrs`) and implement `_convert(start, stop)`, which returns the sample made
    from source rows ``start:stop`` and the counters (events read, events dropped, ...) of those rows.
    """

    format: str = ""

    def __init__(self, path: str | Path):
        self.path = check_source_file(path)
        self.name = self.path.name
        self.n_rows = 0
        self.layout = ""
        self.options: dict[str, Any] = {}
        self.jet_attrs: dict[str, Any] = {}
        self.label_source = "none"
        self.stats: dict[str, int] = {}

    def _convert(self, start: int, stop: int) -> tuple[JetSample, dict[str, int]]:
        raise NotImplementedError

    def _ranges(self, chunk_size: int) -> Iterator[tuple[int, int]]:
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive number of rows, got {chunk_size}")
        for start in range(0, self.n_rows, int(chunk_size)):
            yield start, min(self.n_rows, start + int(chunk_size))

    def chunks(self, chunk_size: int = 10_000) -> Iterator[tuple[int, JetSample]]:
        """Yield (source rows done, sample) for consecutive row ranges; counters accumulate in `stats`."""
        self.stats = {}
        for start, stop in self._ranges(chunk_size):
            sample, counts = self._convert(start, stop)
            for key, value in counts.items():
                self.stats[key] = self.stats.get(key, 0) + int(value)
            yield stop, sample

    def read(self, start: int = 0, stop: int | None = None) -> JetSample:
        """The sample made from source rows ``start:stop`` (all by default), in memory."""
        stop = self.n_rows if stop is None else min(stop, self.n_rows)
        if not 0 <= start < stop:
            raise SchemaError(f"{self.path}: bad row range {start}:{stop} (file has {self.n_rows} rows)")
        return self._convert(start, stop)[0]

    def provenance(self) -> dict[str, Any]:
        """Attributes recording where a converted sample came from and how it was made."""
        return {
            "source_file": self.name,
            "source_format": self.format,
            "source_layout": self.layout,
            "source_size_bytes": int(self.path.stat().st_size),
            "source_rows": int(self.n_rows),
            "conversion_options": dict(self.options),
            "label_source": self.label_source,
            **self.jet_attrs,
        }

    def close(self) -> None:
        """Release the open file."""

    def __enter__(self) -> FormatReader:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
