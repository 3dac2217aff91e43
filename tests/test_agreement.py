from __future__ import annotations

import numpy as np
import pytest

from textnorm import tia2
from textnorm.stats import agreement

# Fleiss (1971) as reproduced on Wikipedia: 10 subjects, 14 raters, 5 categories, kappa = 0.210
FLEISS_COUNTS = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


def test_fleiss_textbook_case():
    labels = np.array([np.repeat(np.arange(5), row) for row in FLEISS_COUNTS])
    assert agreement.fleiss(labels) == pytest.approx(0.20993, abs=1e-4)


def test_fleiss_unsure_modes():
    x = np.array([[1, 1, 1], [0, 0, 0], [1, -1, 1], [0, 0, -1], [1, 0, 1]])
    drop = agreement.fleiss(x, "drop")
    assert drop == pytest.approx(agreement.fleiss(x[[0, 1, 4]]))
    merged = agreement.fleiss(x, "negative")
    assert merged == pytest.approx(agreement.fleiss(np.where(x == -1, 0, x)))
    assert agreement.fleiss(np.array([[1, 1, 1], [0, 0, 0]])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unsure"):
        agreement.fleiss(x, "ignore")


def test_agreement_table(mirror):
    images = tia2.load_images(["counting"], mirror=mirror)
    table = agreement.agreement_table(images)
    row = table.iloc[0]
    assert row.n_images == 7500
    assert row.unsure_rate == 0.0  # counting has no unsure labels
    assert row.kappa_category == pytest.approx(row.kappa_drop)
    assert 0 < row.kappa_category < 1
    assert row.aligned_rate == pytest.approx(images.aligned.mean())
