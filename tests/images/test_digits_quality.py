"""Slow: the built-in digits sample (scikit-learn's 1,797 handwritten digits as 32-pixel pictures in
class folders) reaches at least 0.985 test accuracy with the defaults, trained as
``python -m studio train --data sample:digits`` trains it (issue 20's goal; its time is measured by
hand, see the README)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_digits_reach_0_985_with_defaults(studio_home) -> None:
    from studio.cli.main import build_parser
    from studio.cli.spec import spec_from_args
    from studio.data import get_dataset, load_profile
    from studio.engine.training import train

    spec = spec_from_args(build_parser().parse_args(["train", "--data", "sample:digits"]))
    profile = load_profile(spec.data.dataset_id)
    assert profile["n_classes"] == 10 and get_dataset(spec.data.dataset_id).n_rows == 1797
    result = train(spec)
    print(f"digits: {result.test_metrics} after {result.epochs_run} epochs in {result.seconds:.0f} s")
    assert result.test_metrics["test/accuracy"] >= 0.985
