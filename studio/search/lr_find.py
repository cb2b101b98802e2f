"""The learning-rate finder ("Suggest a learning rate"): a short range test on the spec's own data and
network (Leslie Smith's method, as Lightning's ``Tuner.lr_find`` does it).

The network trains for ``steps`` mini-batches while the learning rate grows exponentially from
``low`` to ``high``; the loss is smoothed, the test stops once it diverges (4 times its lowest), and the
suggestion is a tenth of the rate where the smoothed loss is lowest. Lightning's own ``Tuner.lr_find`` cannot
be used here: the studio's LightningModules optimise manually (their training step returns no loss and
steps the raw optimiser), which its finder needs to hook into. The data, the network and the optimiser
come through the data-kind seam (``studio.modalities``), exactly as training builds them, for tables
and pictures alike: a batch is the network's inputs followed by the targets, and the loss is the
module's own.

It runs in its own process (``python -m studio.search.lr_find`` with the spec as JSON on stdin, the
finding as JSON on stdout), so the page that asks never imports torch: :func:`suggest_learning_rate`.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

from studio.core.errors import TrainingError


@dataclass
class LrFinding:
    learning_rates: list[float]
    losses: list[float]  # smoothed
    suggestion: float | None
    note: str | None = None  # why there is no suggestion


def find_learning_rate(
    spec: Any, *, steps: int | None = None, low: float = 1e-6, high: float = 1.0, skip_begin: int = 10
) -> LrFinding:
    """Run the range test in this process (imports torch)."""
    from studio.modalities import modality_for

    if getattr(modality_for(spec.task), "lr_find_refusal", None):  # batches the range test cannot feed
        from studio.core.errors import TrainingError

        raise TrainingError(modality_for(spec.task).lr_find_refusal)
    import torch

    from studio.data import get_dataset, load_profile, load_table
    from studio.modalities import modality_for

    kind = modality_for(spec.task)
    steps = steps or getattr(kind, "lr_find_steps", 100)  # mini-batches: each kind says how many
    dataset = get_dataset(spec.data.dataset_id)
    prepared = kind.prepare(
        spec, dataset, load_table(dataset.id), load_profile(dataset.id)
    )
    data = prepared.data
    data.setup("fit")
    torch.manual_seed(spec.data.seed)
    module = prepared.lightning_module(spec, data.steps_per_epoch, 1)
    module.train()
    optimizer = module.configure_optimizers()
    if isinstance(optimizer, dict):
        optimizer = optimizer["optimizer"]
    elif isinstance(optimizer, tuple | list):
        optimizer = optimizer[0][0] if isinstance(optimizer[0], list | tuple) else optimizer[0]
    rates, smoothed, best, average = [], [], math.inf, 0.0
    batches = _mini_batches(data, data.batch_size)
    for step in range(steps):
        rate = low * (high / low) ** (step / max(steps - 1, 1))
        for group in optimizer.param_groups:
            group["lr"] = rate
        *inputs, y = next(batches)
        optimizer.zero_grad(set_to_none=True)
        loss = module._loss(module.net(*inputs).float(), y)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        average = 0.98 * average + 0.02 * value
        current = average / (1 - 0.98 ** (step + 1))
        rates.append(rate)
        smoothed.append(current)
        best = min(best, current)
        if step > skip_begin and current > 4 * best:
            break
    return _finding(rates, smoothed, skip_begin, blew_up=len(rates) < steps)


def _mini_batches(data: Any, batch_size: int):
    """Mini-batches of the training rows, round and round (a single-row batch is skipped: batch norm).
    A table's loader hands many mini-batches at once (cut here), a picture loader one."""
    while True:
        for raw in data.train_dataloader():
            batch = data.on_after_batch_transfer(raw, 0)  # pictures: uint8 to normalised floats
            rows = len(batch[-1])
            for start in range(0, rows, batch_size):
                stop = min(start + batch_size, rows)
                if stop - start > 1:
                    yield tuple(t[start:stop] for t in batch)


TOP_POINTS = 3
"""A lowest loss among the last points tried means the loss never turned up: no suggestion."""


def _finding(rates: list[float], losses: list[float], skip_begin: int, blew_up: bool = False) -> LrFinding:
    """A tenth of the rate with the lowest smoothed loss (past the first noisy points): the steepest-fall
    rule alone picks noise on small tables (measured: 5e-6 on the diabetes sample). Only when the loss
    turned up again: a loss still falling at the highest rate tried has no lowest point to go by (the
    breast cancer sample and a small CNN on easy pictures did that; a tenth of the top rate would be a
    guess). A test stopped because the loss blew up did turn up, however close to its end the lowest
    point is."""
    if len(losses) < skip_begin + TOP_POINTS:
        return LrFinding(rates, losses, None, "The loss did not fall clearly at any learning rate.")
    lowest = min(range(skip_begin, len(losses)), key=losses.__getitem__)
    if lowest >= len(losses) - TOP_POINTS and not blew_up:
        return LrFinding(
            rates,
            losses,
            None,
            f"The loss was still falling at the highest learning rate tried ({rates[-1]:.2g}), so there is "
            "no lowest point to go by.",
        )
    return LrFinding(rates, losses, rates[lowest] / 10)


def suggest_learning_rate(spec: Any, timeout: float = 300) -> LrFinding:
    """Run the finder in a child process (torch stays out of the caller); one plain error if it fails."""
    from studio.core.settings import child_env

    done = subprocess.run(
        [sys.executable, "-m", "studio.search.lr_find"],
        input=spec.to_json(),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise TrainingError(f"The learning-rate finder stopped: {last}")
    return LrFinding(**json.loads(done.stdout))


def main() -> int:
    from studio.core.errors import StudioError
    from studio.core.spec import RunSpec

    try:
        finding = find_learning_rate(RunSpec.from_json(sys.stdin.read()))
    except StudioError as err:
        print(str(err), file=sys.stderr)
        return 2
    print(json.dumps(asdict(finding)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
