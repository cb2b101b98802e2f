"""The verdict rules on their own: the trivial guess's scores (checked against torchmetrics, which scores
the models), when a model is no better, barely better or better than it, the kept epoch in words, and
when validation and test scores differ widely."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torchmetrics

from studio.core import quality
from studio.core.quality import BARELY, BETTER, GUESS, baseline_scores, verdict


def test_guess_scores_for_classes_match_torchmetrics_on_a_constant_answer() -> None:
    rng = random.Random(0)
    train = [rng.choice([0, 0, 0, 1, 1, 2, 3]) for _ in range(300)]  # class 0 is the most common
    test = [rng.choice([0, 1, 1, 2]) for _ in range(57)]  # ... but not in the test rows; class 3 absent
    scores = baseline_scores(True, train, test)

    answers = torch.zeros(len(test), 4)
    answers[:, 0] = 1.0  # always class 0, fully sure
    target = torch.tensor(test)
    accuracy = torchmetrics.Accuracy(task="multiclass", num_classes=4)(answers, target)
    f1 = torchmetrics.F1Score(task="multiclass", num_classes=4, average="macro")(answers, target)
    assert scores["baseline/test_accuracy"] == pytest.approx(float(accuracy))
    assert scores["baseline/test_f1_macro"] == pytest.approx(float(f1))
    assert scores["baseline/test_auroc"] == 0.5
    assert scores[quality.TEST_ROWS] == 57
    # Hanley & McNeil for one class against the rest at AUROC 0.5: (n + 1) / (12 · positives · negatives)
    counts = [test.count(c) for c in (0, 1, 2)]
    expected = math.sqrt(sum((57 + 1) / (12 * c * (57 - c)) for c in counts)) / 3
    assert scores[quality.AUROC_NOISE] == pytest.approx(expected)


def test_guess_scores_for_numbers_match_torchmetrics_on_the_training_mean() -> None:
    rng = random.Random(1)
    train = [rng.gauss(10, 3) for _ in range(200)]
    test = [rng.gauss(11, 3) for _ in range(40)]  # shifted: the training mean is a little off here
    scores = baseline_scores(False, train, test)

    mean = sum(train) / len(train)
    guess, truth = torch.full((40,), mean, dtype=torch.float64), torch.tensor(test, dtype=torch.float64)
    assert scores["baseline/test_mae"] == pytest.approx(float(torchmetrics.MeanAbsoluteError()(guess, truth)))
    rmse = torchmetrics.MeanSquaredError(squared=False)(guess, truth)
    assert scores["baseline/test_rmse"] == pytest.approx(float(rmse))
    assert scores["baseline/test_r2"] == pytest.approx(float(torchmetrics.R2Score()(guess, truth)))
    assert scores["baseline/test_r2"] < 0  # a guess from other rows never beats the test rows' own mean


def classes(accuracy: float, guess: float, rows: int, auroc: float = 0.5, auroc_se: float = 0.03) -> dict:
    return {
        "test/accuracy": accuracy,
        "test/auroc": auroc,
        "baseline/test_accuracy": guess,
        quality.AUROC_NOISE: auroc_se,
        quality.TEST_ROWS: rows,
    }


@pytest.mark.parametrize(
    ("accuracy", "level"),
    [
        (0.202, GUESS),  # the free-text table: the largest class's share, exactly
        (0.19, GUESS),
        (0.23, GUESS),  # 1.6 standard errors above (0.018 on 500 rows): what luck gives
        (0.26, BARELY),  # 3.2 standard errors: real, but it avoids 7% of the guess's mistakes
        (0.30, BARELY),  # 5.5 standard errors, 12% of the mistakes avoided: still only a little better
        (0.45, BETTER),  # a third of the mistakes avoided
    ],
)
def test_classes_verdict_counts_standard_errors_of_the_guess(accuracy: float, level: str) -> None:
    found = verdict(classes(accuracy, 0.202, 500))
    assert found is not None and found.level == level, found
    assert "500 rows" in found.sentence and "20.2%" in found.sentence
    assert found.sentence.startswith(found.title)


def test_few_test_rows_need_a_larger_gain() -> None:
    # 0.8 against 0.5 is 3 rows in 10 better: two standard errors are 32 points on 10 rows
    assert verdict(classes(0.8, 0.5, 10)).level == GUESS
    assert verdict(classes(0.8, 0.5, 100)).level == BETTER
    assert verdict(classes(1.0, 0.4, 27)).level == BETTER  # wine
    # 11 right of 12 against a guess's 6: real (2.9 standard errors) and large, but how large is unsure
    small = verdict(classes(11 / 12, 0.5, 12))
    assert small.level == BETTER and small.sentence.endswith(
        "though on 12 rows how much better is uncertain."
    )
    assert "uncertain" not in verdict(classes(0.8, 0.5, 100)).sentence


def test_a_model_that_ranks_but_answers_like_the_guess_is_barely_better() -> None:
    found = verdict(classes(0.95, 0.95, 400, auroc=0.80, auroc_se=0.05))
    assert found.level == BARELY and "AUROC 80.0%" in found.sentence
    assert verdict(classes(0.95, 0.95, 400, auroc=0.55, auroc_se=0.05)).level == GUESS


@pytest.mark.parametrize(
    ("r2", "guess", "rows", "level"),
    [
        (0.03, -0.01, 66, GUESS),  # below 4/66 = 0.061
        (0.15, -0.01, 66, BARELY),  # above 4/66, but it explains 15% of the spread
        (0.05, -0.01, 2000, BARELY),  # real on 2,000 rows, but explains 5% of the spread
        (0.21, -0.01, 66, BETTER),  # a fifth of the spread; below 16/66 = 0.24: uncertain how much
        (0.50, -0.01, 66, BETTER),  # diabetes
    ],
)
def test_numbers_verdict(r2: float, guess: float, rows: int, level: str) -> None:
    found = verdict({"test/r2": r2, "baseline/test_r2": guess, quality.TEST_ROWS: rows})
    assert found is not None and found.level == level, found


def test_no_verdict_without_the_guess_or_the_test() -> None:
    assert verdict({"test/accuracy": 0.9}) is None  # a run from before the guess was scored
    assert verdict({"baseline/test_accuracy": 0.4, quality.TEST_ROWS: 20}) is None  # an untested trial


def test_kept_epoch_says_which_and_why() -> None:
    text = quality.kept_epoch_sentence(8, 1000, 1000, "val/loss", None)
    assert text.startswith("Kept epoch 8 of 1,000: it had the best validation loss")
    assert "none of the 992 epochs after it improved on it" in text
    one_after = quality.kept_epoch_sentence(7, 8, 8, "val/rmse", None)
    assert ", and the epoch after it did not improve on it; the model you download is epoch 7's." in one_after
    early = quality.kept_epoch_sentence(8, 23, 1000, "val/accuracy", 15)
    assert "; the 15 epochs after it did not improve on it, so early stopping ended the run" in early
    assert "best validation accuracy" in early and "1,000 epochs were allowed" in early
    assert quality.kept_epoch_sentence(20, 20, 20, "val/loss", 10) == (
        "Kept epoch 20 of 20, the last epoch: it had the best validation loss."
    )
    assert quality.kept_epoch_sentence(None, 20, 20, "val/loss", 10) is None


def test_validation_and_test_scores_that_differ_widely_are_named() -> None:
    gap = {"kept/val_accuracy": 0.775, "test/accuracy": 0.618, quality.VAL_ROWS: 120, quality.TEST_ROWS: 120}
    text = quality.validation_gap_sentence(gap, "accuracy")
    assert text and "77.5% on the validation rows against 61.8% on the test rows" in text
    assert "honest estimate" in text
    close = {**gap, "test/accuracy": 0.75}
    assert quality.validation_gap_sentence(close, "accuracy") is None
    few = {**gap, quality.VAL_ROWS: 10, quality.TEST_ROWS: 10}  # 1.6 rows of 10: luck
    assert quality.validation_gap_sentence(few, "accuracy") is None


def test_metric_words_and_help() -> None:
    assert quality.metric_label("val/f1_macro") == "validation F1 score (macro)"
    assert "rare classes count as much" in quality.metric_help("test/f1_macro")
    assert "0.5" in quality.metric_help("auroc") and quality.metric_help("epoch") == ""
