"""The learning-rate finder on pictures: the same range test as for tables, through the data-kind seam,
on a real small CNN (in this process; the page runs it in a child process); and when it suggests nothing."""

from __future__ import annotations

import math

from studio.core.spec import RunSpec
from studio.modalities import modality
from studio.search.lr_find import _finding, find_learning_rate


def test_the_finder_runs_on_pictures(shapes_dataset) -> None:
    spec = RunSpec.from_dict({"task": "image_classification", "data": {"dataset_id": shapes_dataset.id}})

    assert modality("image").lr_find_steps == 60  # the page's test; 30 steps keep this one short
    usual = find_learning_rate(spec, steps=30)
    assert len(usual.learning_rates) == 30  # up to 1.0 the loss never blows up here
    assert usual.learning_rates == sorted(usual.learning_rates)
    assert all(math.isfinite(loss) for loss in usual.losses)
    # easy pictures: the loss still falls at 1.0, so there is no lowest point and no suggestion
    assert usual.suggestion is None and "still falling at the highest learning rate tried" in usual.note

    sgd = spec.with_changes(**{"optimizer.name": "sgd"})
    wider = find_learning_rate(sgd, steps=30, high=1e4)  # far enough for plain SGD's loss to blow up
    assert wider.suggestion is not None and wider.note is None
    lowest = min(range(10, len(wider.losses)), key=wider.losses.__getitem__)
    assert wider.suggestion == wider.learning_rates[lowest] / 10 < wider.learning_rates[-1] / 10


def test_a_suggestion_needs_the_loss_to_turn_up() -> None:
    rates = [10 ** (-6 + 6 * i / 49) for i in range(50)]
    falling = [1.0 - i / 100 for i in range(50)]
    valley = [abs(i - 30) / 30 + 0.1 for i in range(50)]

    assert _finding(rates, falling, 10).suggestion is None
    assert _finding(rates[:40], falling[:40], 10, blew_up=True).suggestion == rates[39] / 10  # then NaN
    assert _finding(rates, valley, 10).suggestion == rates[30] / 10
    assert _finding(rates[:12], valley[:12], 10).note == "The loss did not fall clearly at any learning rate."
