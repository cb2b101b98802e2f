"""How good a model is, in plain words: its test scores against a trivial guess on the same test rows,
the epoch it kept and why, and whether its validation and test scores disagree.

At the end of training the engine scores the trivial model on the same test rows
(:func:`baseline_scores`: the most common training class for classes, the training mean for numbers)
and logs those scores as ``baseline/test_*`` with the number of test rows. Every page and command that
shows a run's scores (the run page, the Runs list, Compare, ``jobs show``, ``studio train``) asks
:func:`verdict` for the one sentence about them, so they all say the same thing.

The rules (made to be honest with small test sets, where one row is several points):

- **Classes.** A guess that always answers the most common class is right on a share ``b`` of the
  ``n`` test rows. A model that is no better would score within ``2·√(b(1−b)/n)`` of ``b`` about 98% of
  the time (the binomial standard error of an accuracy on ``n`` rows). Below that margin the model is
  **no better than a guess**. Above it, a model that avoids less than a fifth of the guess's mistakes
  is **barely better**: really better, but only a little. A model whose answers are no better than the
  guess but which ranks the rows clearly better than chance (its AUROC at least 2 standard errors above
  0.5, by Hanley and McNeil's formula for a model with no information) is called barely better, with
  that said.
- **Numbers.** The guess is the training mean (its R² on the test rows is about 0, or below 0). A model
  with no information reaches a squared correlation of ``4/n`` about 2% of the time on ``n`` rows (a
  correlation 2 standard errors from 0). Below ``R²(guess) + 4/n`` the model is **no better than a
  guess**; one that explains less than a fifth of the spread (R² < 0.2) is **barely better**.

How much better is one question, how sure is another: a model better than a guess by less than 4
standard errors (``16/n`` in R²) is better, but the sentence adds that the size of its gain is uncertain
on so few rows (11 right of 12 against a guess's 6 is real, and could be 70% or 99% on new rows).

Cheap to import (standard library only): pages, the CLI and the engine all use it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from studio.core.spec import RunSpec

BASELINE = "baseline/"
"""Prefix of the trivial model's scores on the test rows (``baseline/test_accuracy``)."""
TEST_ROWS = "baseline/test_rows"
AUROC_NOISE = "baseline/test_auroc_se"
"""The standard error of the AUROC of a model with no information on these test rows."""
KEPT = "kept/"
"""Prefix of what the kept epoch scored on the validation rows (``kept/val_accuracy``)."""
KEPT_EPOCH = "kept/epoch"
EPOCHS_RUN = "kept/epochs_run"
VAL_ROWS = "kept/val_rows"
SMEAR = "target/smear"
"""A target learned on a log scale: the smearing factor its predictions are multiplied by
(``studio.core.runtime.smearing``)."""
SMEAR_ROWS = "target/smear_rows"
"""The validation rows the smearing factor was measured on."""
SMEARED_VAL_R2 = "kept/val_r2_smeared"
"""The kept epoch's validation R² of smeared predictions, as the test R² is scored: what the validation
score is compared with the test score by (:func:`validation_gap_sentence`); the ``kept/val_r2`` of the
curves and the early stopping is of the predictions before the factor."""
SMEAR_MIN_ROWS = 20
"""``studio.core.runtime.SMEAR_MIN_ROWS`` (that module imports torch; this one stays light)."""

GUESS, BARELY, BETTER = "guess", "barely", "better"
LEVEL_TITLES = {
    GUESS: "No better than a guess",
    BARELY: "Barely better than a guess",
    BETTER: "Better than a guess",
}
NOISE_MARGIN = 2.0
"""Standard errors above the guess a model must reach to count as better than it (about 98%, one-sided)."""
CLEAR_MARGIN = 4.0
"""Standard errors above the guess below which the size of a model's gain is called uncertain."""
SMALL_GAIN = 0.20
"""A model that avoids less than this share of the guess's mistakes (or R² below it) is barely better."""

METRIC_WORDS = {
    "loss": "loss",
    "accuracy": "accuracy",
    "f1_macro": "F1 score (macro)",
    "auroc": "AUROC",
    "mae": "mean absolute error",
    "rmse": "root mean squared error",
    "r2": "R²",
    "learning_rate": "learning rate",
    "epoch": "epoch",
}
METRIC_HELP = {
    "loss": "How wrong the model's answers are, as the training measures it (cross-entropy for classes, "
    "squared error for numbers): lower is better.",
    "accuracy": "The share of rows the model answers right.",
    "f1_macro": "F1 (macro): for each class, how well the model balances finding that class against "
    "false alarms, averaged over the classes so that rare classes count as much as common ones. "
    "1 is perfect; always answering the most common class scores low.",
    "auroc": "AUROC: how well the model ranks, from 0.5 (no better than a coin) to 1 (every row of a "
    "class ranked above every row of the others), averaged over the classes. It looks at the "
    "probabilities, not only the answers.",
    "mae": "The average distance between the prediction and the true value, in the target's units.",
    "rmse": "Like the mean absolute error, but large mistakes count more (the square root of the mean "
    "squared error), in the target's units.",
    "r2": "R²: the share of the target's spread the model explains. 1 is perfect, 0 is no better than "
    "always predicting the average, below 0 is worse than that.",
}
SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test", "baseline": "guess's"}


def metric_name(metric: str) -> str:
    """The metric without its split, in words: ``val/f1_macro`` → ``F1 score (macro)``."""
    name = metric.split("/", 1)[-1]
    return METRIC_WORDS.get(name, name.replace("_", " "))


def metric_label(metric: str) -> str:
    """A metric in words with its split: ``val/accuracy`` → ``validation accuracy``."""
    split, _, name = metric.partition("/")
    if not name:
        return metric_name(metric)
    return f"{SPLIT_WORDS.get(split, split)} {metric_name(metric)}"


def metric_help(metric: str) -> str:
    """One line saying what a metric means (empty for one without an explanation)."""
    return METRIC_HELP.get(metric.split("/", 1)[-1], "")


def _percent(value: float) -> str:
    return f"{value:.1%}"


def _rows(n: int, unit: str = "rows") -> str:
    singular = unit[:-1] if unit.endswith("s") else unit
    return f"{n:,} {singular if n == 1 else unit}"


# --------------------------------------------------------------------------- the trivial model's scores
def baseline_scores(classes: bool, train_targets: Sequence, test_targets: Sequence) -> dict[str, float]:
    """The trivial model's test scores on ``test_targets`` (keys ``baseline/test_*`` and the row count).

    Classes (``train_targets`` and ``test_targets`` class indices): always the most common training
    class; its accuracy, F1 (macro, over the classes present in the test rows or answered, as
    torchmetrics averages it) and AUROC 0.5 (its probabilities are the same for every row), with the
    AUROC's standard error for a model with no information. Numbers: always the training mean; its MAE,
    RMSE and R² (about 0, or below 0 when the training mean is off for the test rows)."""
    test = list(test_targets)
    n = len(test)
    if not n or not len(train_targets):
        return {}
    if classes:
        counts = Counter(int(y) for y in train_targets)
        guess = max(sorted(counts), key=lambda c: counts[c])  # ties: the lowest class index
        test_counts = Counter(int(y) for y in test)
        share = test_counts.get(guess, 0) / n
        present = set(test_counts) | {guess}
        f1 = (2 * share / (1 + share)) / len(present) if share else 0.0
        return {
            f"{BASELINE}test_accuracy": share,
            f"{BASELINE}test_f1_macro": f1,
            f"{BASELINE}test_auroc": 0.5,
            AUROC_NOISE: _auroc_noise(list(test_counts.values()), n),
            TEST_ROWS: float(n),
        }
    values = [float(y) for y in train_targets]
    mean = math.fsum(values) / len(values)
    truth = [float(y) for y in test]
    errors = [t - mean for t in truth]
    test_mean = math.fsum(truth) / n
    spread = math.fsum((t - test_mean) ** 2 for t in truth)
    squared = math.fsum(e * e for e in errors)
    return {
        f"{BASELINE}test_mae": math.fsum(abs(e) for e in errors) / n,
        f"{BASELINE}test_rmse": math.sqrt(squared / n),
        f"{BASELINE}test_r2": 1.0 - squared / spread if spread > 0 else 0.0,
        TEST_ROWS: float(n),
    }


def _auroc_noise(counts: list[int], n: int) -> float:
    """Hanley and McNeil's standard error of an AUROC of 0.5 for each class against the rest, averaged
    over the classes (as the macro AUROC is), taking the classes as independent."""
    variances = [(n + 1) / (12 * c * (n - c)) for c in counts if 0 < c < n]
    if not variances:
        return math.nan
    return math.sqrt(math.fsum(variances)) / len(variances)


# --------------------------------------------------------------------------- the verdict
@dataclass(frozen=True)
class Verdict:
    level: str
    """``guess``, ``barely`` or ``better``."""
    sentence: str
    """One plain sentence: the level, the scores side by side and the test rows they come from."""

    @property
    def title(self) -> str:
        return LEVEL_TITLES[self.level]

    @property
    def worrying(self) -> bool:
        """No better, or barely better, than a guess: the pages say so prominently."""
        return self.level in (GUESS, BARELY)


def has_baseline(metrics: Mapping[str, float]) -> bool:
    return TEST_ROWS in metrics


def verdict(metrics: Mapping[str, float]) -> Verdict | None:
    """The verdict on a run's test scores (``test/*``) against the guess's (``baseline/test_*``) in the
    same mapping; None when either is missing (a search's untested trial, a run from before the guess
    was scored)."""
    n = int(metrics.get(TEST_ROWS, 0) or 0)
    if n <= 0:
        return None
    if f"{BASELINE}test_accuracy" in metrics and "test/accuracy" in metrics:
        return _classes_verdict(metrics, n)
    if f"{BASELINE}test_r2" in metrics and "test/r2" in metrics:
        return _numbers_verdict(metrics, n)
    return None


def _classes_verdict(metrics: Mapping[str, float], n: int) -> Verdict | None:
    accuracy, guess = float(metrics["test/accuracy"]), float(metrics[f"{BASELINE}test_accuracy"])
    if not (math.isfinite(accuracy) and math.isfinite(guess)):
        return None
    share = min(max(guess, 1 / n), 1 - 1 / n) if n > 1 else 0.5  # (never a zero margin)
    noise = math.sqrt(share * (1 - share) / n)
    gain = accuracy - guess
    both = (
        f"{_percent(accuracy)} accuracy against {_percent(guess)} for always answering the most common "
        f"class, on the same {_rows(n)}"
    )
    if gain < NOISE_MARGIN * noise or gain <= 0:
        auroc = metrics.get("test/auroc")
        auroc_noise = metrics.get(AUROC_NOISE)
        ranks = (
            auroc is not None
            and auroc_noise is not None
            and math.isfinite(auroc)
            and math.isfinite(auroc_noise)
            and auroc - 0.5 >= NOISE_MARGIN * auroc_noise
        )
        if ranks:
            return Verdict(
                BARELY,
                f"Barely better than a guess: its answers are right no more often than always answering "
                f"the most common class ({both}), though it ranks the rows better than chance (AUROC "
                f"{_percent(float(auroc))}; a model with no information scores 50%).",
            )
        margin = f" (a gain under {_percent(NOISE_MARGIN * noise)} is what luck gives on {_rows(n)})"
        return Verdict(GUESS, f"No better than a guess: {both}{margin if gain > 0 else ''}.")
    errors_removed = gain / (1 - guess) if guess < 1 else 0.0
    unsure = _unsure(n) if gain < CLEAR_MARGIN * noise else ""
    level = BARELY if errors_removed < SMALL_GAIN else BETTER
    return Verdict(
        level,
        f"{LEVEL_TITLES[level]}: {both}; it avoids {errors_removed:.0%} of the guess's mistakes{unsure}.",
    )


def _unsure(n: int) -> str:
    return f", though on {_rows(n)} how much better is uncertain"


def _numbers_verdict(metrics: Mapping[str, float], n: int) -> Verdict | None:
    r2, guess = float(metrics["test/r2"]), float(metrics[f"{BASELINE}test_r2"])
    if not (math.isfinite(r2) and math.isfinite(guess)):
        return None
    floor = max(guess, 0.0)
    both = (
        f"R² {r2:.3f} against {guess:.3f} for always predicting the training average, on the same {_rows(n)}"
    )
    if r2 < floor + NOISE_MARGIN**2 / n:
        return Verdict(
            GUESS,
            f"No better than a guess: {both} (a model with no information reaches R² {NOISE_MARGIN**2 / n:.3f} "
            f"by luck on {_rows(n)}).",
        )
    unsure = _unsure(n) if r2 < floor + CLEAR_MARGIN**2 / n else ""
    level = BARELY if r2 < SMALL_GAIN else BETTER
    return Verdict(level, f"{LEVEL_TITLES[level]}: {both}; it explains {r2:.0%} of the spread{unsure}.")


# --------------------------------------------------------------------------- the kept epoch
def kept_epoch_sentence(
    kept: int | None,
    epochs_run: int | None,
    max_epochs: int,
    monitor: str,
    patience: int | None,
) -> str | None:
    """Which epoch's model was kept and why, e.g. "Kept epoch 8 of 1,000: it had the best validation
    loss, and none of the 992 epochs after it improved on it." ``kept`` and ``epochs_run`` are 1-based
    counts; ``patience`` is None without early stopping."""
    if not kept or not epochs_run:
        return None
    best = f"the best {metric_label(monitor)}"
    if kept >= epochs_run:
        ran = (
            "the last epoch"
            if epochs_run == max_epochs
            else f"its last epoch ({epochs_run:,} of {max_epochs:,})"
        )
        return f"Kept epoch {kept:,} of {epochs_run:,}, {ran}: it had {best}."
    later = epochs_run - kept
    after = f"{'the epoch' if later == 1 else f'the {later:,} epochs'} after it"
    if patience is not None and epochs_run < max_epochs:
        return (
            f"Kept epoch {kept:,} of {epochs_run:,}: it had {best}; {after} did not improve on it, so early "
            f"stopping ended the run (patience {patience:,}; {max_epochs:,} epochs were allowed)."
        )
    not_better = f"{after} did not improve on it" if later == 1 else f"none of {after} improved on it"
    return (
        f"Kept epoch {kept:,} of {epochs_run:,}: it had {best}, and {not_better}; the model you download is "
        f"epoch {kept:,}'s."
    )


# --------------------------------------------------------------------------- validation against test
def validation_gap_sentence(metrics: Mapping[str, float], main: str) -> str | None:
    """A sentence when the kept epoch's validation score and the test score of the main metric
    (``accuracy`` or ``r2``) differ by more than chance on their rows and by at least 5 points (0.05);
    None otherwise.

    The noise: the binomial standard error of each accuracy, or about ``(1−R²)·√(2/n)`` for an R² (the
    relative spread of a mean squared error on ``n`` rows), combined for the two splits."""
    val, test = metrics.get(f"{KEPT}val_{main}"), metrics.get(f"test/{main}")
    if main == "r2" and SMEARED_VAL_R2 in metrics:  # the test predictions are smeared: so are these
        val = metrics[SMEARED_VAL_R2]
    n_val, n_test = int(metrics.get(VAL_ROWS, 0) or 0), int(metrics.get(TEST_ROWS, 0) or 0)
    if val is None or test is None or n_val <= 0 or n_test <= 0:
        return None
    if not (math.isfinite(val) and math.isfinite(test)):
        return None
    if main == "accuracy":
        noise = math.sqrt(val * (1 - val) / n_val + test * (1 - test) / n_test)
        shown = f"{_percent(val)} on the validation rows against {_percent(test)} on the test rows"
    else:
        noise = math.hypot(
            (1 - min(val, 1.0)) * math.sqrt(2 / n_val), (1 - min(test, 1.0)) * math.sqrt(2 / n_test)
        )
        shown = f"{metric_name(main)} {val:.3f} on the validation rows against {test:.3f} on the test rows"
    gap = val - test
    if abs(gap) < max(0.05, NOISE_MARGIN * noise):
        return None
    rows = f"({_rows(n_val)} and {_rows(n_test)})"
    if gap > 0:
        return (
            f"The validation and test scores differ widely: {shown} {rows}. The kept epoch was chosen "
            "for its validation score, which flatters it; the test score is the honest estimate. More "
            "data, or a search (which cross-validates small tables), gives a steadier one."
        )
    return (
        f"The validation and test scores differ widely: {shown} {rows}. With this few rows either "
        "score can be off by several points; more data gives a steadier estimate."
    )


# --------------------------------------------------------------------------- smearing
def smear_sentence(outcome: Mapping[str, float]) -> str | None:
    """What a target learned on a log scale does to the predictions, in one plain sentence: scaled by
    the smearing factor (above 1), or left as they are for want of validation rows; None otherwise."""
    factor, rows = outcome.get(SMEAR), outcome.get(SMEAR_ROWS)
    if factor is None or rows is None or not math.isfinite(factor):
        return None
    if rows < SMEAR_MIN_ROWS:
        return (
            f"Predictions are the log-scale model's median-like values as they are: {_rows(int(rows), 'validation rows')} "
            "are too few to measure how far below the average they fall (smearing)."
        )
    if factor <= 1.0:
        return None
    return (
        f"Predictions are scaled by {factor:.3g} to turn the log-scale model's median-like value into an "
        f"average (smearing, measured on {_rows(int(rows), 'validation rows')})."
    )


# --------------------------------------------------------------------------- for a run's spec and outcome
def kept_epoch_of(spec: RunSpec, outcome: Mapping[str, float]) -> str | None:
    """:func:`kept_epoch_sentence` for a run: ``outcome`` holds its ``kept/*`` values."""
    kept, ran = outcome.get(KEPT_EPOCH), outcome.get(EPOCHS_RUN)
    if kept is None or ran is None:
        return None
    stopping = spec.early_stopping
    return kept_epoch_sentence(
        int(kept),
        int(ran),
        spec.training.epochs,
        stopping.metric,
        stopping.patience if stopping.enabled else None,
    )


def validation_gap_of(spec: RunSpec, outcome: Mapping[str, float]) -> str | None:
    """:func:`validation_gap_sentence` for a run's main score (accuracy or R²)."""
    from studio.core.spec import main_metric

    return validation_gap_sentence(outcome, main_metric(spec.task).split("/", 1)[1])


def outcome_lines(spec: RunSpec, outcome: Mapping[str, float]) -> list[tuple[str, str]]:
    """``(label, sentence)`` lines for a terminal: the verdict, the kept epoch, a wide validation/test
    gap (what ``jobs show`` and ``studio train`` print)."""
    lines = []
    found = verdict(outcome)
    if found is not None:
        lines.append(("verdict", found.sentence))
    kept = kept_epoch_of(spec, outcome)
    if kept:
        lines.append(("epoch kept", kept))
    gap = validation_gap_of(spec, outcome)
    if gap:
        lines.append(("val vs test", gap))
    smear = smear_sentence(outcome)
    if smear:
        lines.append(("smearing", smear))
    return lines
