"""What a run is called when its spec names it not: the data set, what was learnt, the network and when."""

from __future__ import annotations

import time

from studio.core.errors import DatasetError
from studio.core.spec import ARCHITECTURES, RunSpec
from studio.core.tasks import task_info
from studio.data.store import get_dataset, load_profile


def readable_run_name(spec: RunSpec) -> str:
    """The spec's name, else what was learnt from what, e.g. ``penguins · species · Neural network ·
    11-27 09:30`` or ``digits · 10 classes · Small CNN · 11-27 09:30``."""
    if spec.name:
        return spec.name
    try:
        data_name = get_dataset(spec.data.dataset_id).name
        classes = int(load_profile(spec.data.dataset_id).get("n_classes", 0))
    except (DatasetError, OSError, ValueError):  # a spec for a data set that is gone: say its id
        data_name, classes = spec.data.dataset_id, 0
    learnt = f"{classes} classes" if task_info(spec.task).fixed_target and classes else spec.data.target
    network = ARCHITECTURES[spec.architecture.name].title.split(" (", 1)[0]
    return f"{data_name} · {learnt} · {network} · {time.strftime('%m-%d %H:%M')}"
