"""ScoreTable.from_samples / concatenate: the one way scores, labels, weights, sources and observers are joined."""

from __future__ import annotations

import numpy as np
import pytest

from jetad.data import JetSample
from jetad.data.scores import ScoreTable


def jets(n: int, label: int, mjj: bool = False, seed: int = 0) -> JetSample:
    rng = np.random.default_rng(seed)
    cons = np.zeros((n, 2, 4))
    cons[:, :, 0] = rng.uniform(10, 100, (n, 2))
    cons[:, :, 3] = cons[:, :, 0] * 1.1
    sample = JetSample.from_constituents(cons, np.ones((n, 2), bool), label=label)
    sample.weight = rng.uniform(0.5, 2.0, n)
    if mjj:
        sample.event = {"mjj": rng.uniform(2000, 4000, n)}
    return sample


def test_parts_keep_their_rows_sources_and_the_common_observers():
    a, b, c = jets(5, 0, mjj=True, seed=1), jets(3, 1, seed=2), jets(4, 0, mjj=True, seed=3)
    scores = [np.arange(5.0), np.arange(3.0) + 10, np.arange(4.0) + 20]
    table = ScoreTable.from_samples(scores, [a, b, c], ["qcd.h5", "top.h5", "qcd.h5"], attrs={"detector": "x"})
    np.testing.assert_array_equal(table.score, np.concatenate(scores))
    np.testing.assert_array_equal(table.label, [0] * 5 + [1] * 3 + [0] * 4)
    np.testing.assert_allclose(table.weight, np.concatenate([a.weight, b.weight, c.weight]))
    assert table.sources == ["qcd.h5", "top.h5"]
    np.testing.assert_array_equal(table.source, [0] * 5 + [1] * 3 + [0] * 4)
    assert "mjj" not in table.observers  # b has none: an observer is kept only where every part has it
    np.testing.assert_allclose(table.observers["pt"], np.concatenate([a.jets[:, 0], b.jets[:, 0], c.jets[:, 0]]),
                               rtol=1e-6)
    assert table.attrs == {"detector": "x"}
    assert table.select("top.h5").sum() == 3


def test_concatenating_tables_remaps_their_source_indices():
    first = ScoreTable.from_samples([np.ones(2), np.zeros(3)], [jets(2, 0), jets(3, 1)], ["a", "b"])
    second = ScoreTable.from_samples([np.ones(4)], [jets(4, 1)], ["b"])
    joined = ScoreTable.concatenate([first, second])
    assert joined.sources == ["a", "b"]
    np.testing.assert_array_equal(joined.source, [0, 0, 1, 1, 1, 1, 1, 1, 1])


@pytest.mark.parametrize("bad", ["lengths", "rows", "empty"])
def test_mismatched_parts_are_refused(bad):
    sample = jets(3, 0)
    args = {"lengths": ([np.ones(3)], [sample], ["a", "b"]), "rows": ([np.ones(2)], [sample], ["a"]),
            "empty": ([], [], [])}[bad]
    with pytest.raises(ValueError):
        ScoreTable.from_samples(*args)
