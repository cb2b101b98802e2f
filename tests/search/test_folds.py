"""Cross-validation folds of a split: the test rows never move, each fold's validation rows are another
block of the other rows (fold 0 is the split itself), and a trial of a small table is scored on them."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_modules.tabular.data import stratified_split


@pytest.mark.parametrize("labels", [None, np.repeat([0, 1, 2], [120, 50, 30])])
def test_folds_keep_the_test_rows_and_move_the_validation_rows(labels) -> None:
    n = 200
    base = stratified_split(labels, n, 0.15, 0.15, seed=7)
    folds = [stratified_split(labels, n, 0.15, 0.15, seed=7, fold=f) for f in range(5)]
    assert all(np.array_equal(a, b) for a, b in zip(base, folds[0], strict=True))
    rest = np.setdiff1d(np.arange(n), base[2])
    for train, val, test in folds:
        assert np.array_equal(test, base[2])
        assert np.array_equal(np.sort(np.concatenate([train, val])), rest)
        assert len(val) == len(base[1])
        if labels is not None:  # still stratified
            assert sorted(np.bincount(labels[val]).tolist()) == sorted(np.bincount(labels[base[1]]).tolist())
    seen = np.concatenate([val for _, val, _ in folds])
    assert len(np.unique(seen)) == len(seen)  # five different blocks of validation rows


def test_which_searches_cross_validate() -> None:
    from studio.core.spec import RunSpec
    from studio.search.pruning import CV_MAX_ROWS, cv_folds

    table = RunSpec.model_validate({"task": "classification", "data": {"dataset_id": "d", "target": "y"}})
    assert cv_folds(table, 569) == 5
    assert cv_folds(table, CV_MAX_ROWS + 1) == 1  # a large table's validation rows are enough
    wide_val = table.model_copy(update={"data": table.data.model_copy(update={"val_fraction": 0.3})})
    assert cv_folds(wide_val, 569) == 2
    pictures = RunSpec.model_validate(
        {"task": "image_classification", "data": {"dataset_id": "d", "target": "label"}}
    )
    assert cv_folds(pictures, 500) == 1
