"""A data kind that exists only for the tests: it proves that a new kind is one module plus its
registration, with no edit anywhere in the studio.

Task ``toy_sum``: from a table's numeric columns, predict the target with one linear layer, with its own
DataModule (plain mini-batches, no preprocessing but centring), its own network in the catalogue
(``toy_linear``) and its own bundle (a zip with the weights and a JSON description). Loaded in any
process through ``STUDIO_MODALITIES=tests.modalities.toy_kind`` (the repository root on the path).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.spec import ArchitectureInfo, StudioModel, register_architecture
from studio.core.tasks import TaskInfo, register_task
from studio.modalities import register

TASK = "toy_sum"
KIND = "toy"


class ToyParams(StudioModel):
    """A toy network has no settings."""


register_task(
    TaskInfo(TASK, KIND, "Toy sum", classes=False, data_kind="tabular", default_architecture="toy_linear")
)
register_architecture(
    ArchitectureInfo(
        name="toy_linear",
        title="Toy linear layer",
        description="One linear layer over the numeric columns (tests only).",
        tasks=(TASK,),
        params_model=ToyParams,
    )
)


def _lightning() -> tuple[Any, Any]:
    """The toy's DataModule and network classes (torch and Lightning imported only when training)."""
    import numpy as np
    import pytorch_lightning as pl
    import torch
    from torch import nn

    class ToyNet(nn.Module):
        def __init__(self, n_in: int):
            super().__init__()
            self.linear = nn.Linear(n_in, 1)

        def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
            return self.linear(x_num)

    class Batches:
        """A list of batches Lightning reads as one loader (a plain list would be several loaders)."""

        def __init__(self, batches: list[tuple[torch.Tensor, ...]]):
            self.batches = batches

        def __len__(self) -> int:
            return len(self.batches)

        def __iter__(self):  # noqa: ANN204
            return iter(self.batches)

    class ToyData(pl.LightningDataModule):
        def __init__(self, frame: Any, spec: Any):
            super().__init__()
            target = spec.data.target
            numbers = frame.drop(columns=[target]).select_dtypes("number")
            x = numbers.to_numpy(dtype=np.float32)
            self.columns = list(numbers.columns)
            self.mean, self.std = x.mean(axis=0), x.std(axis=0) + 1e-6
            x = (x - self.mean) / self.std
            y = frame[target].to_numpy(dtype=np.float32)
            self.target_mean, self.target_std = float(y.mean()), float(y.std() + 1e-6)
            y = (y - self.target_mean) / self.target_std
            order = np.random.default_rng(spec.data.seed).permutation(len(frame))
            n_val = n_test = max(2, len(frame) // 5)
            parts = {
                "val": order[:n_val],
                "test": order[n_val : n_val + n_test],
                "train": order[n_val + n_test :],
            }
            self.split = {
                name: (
                    torch.from_numpy(x[idx]),
                    torch.zeros(len(idx), 0, dtype=torch.long),
                    torch.from_numpy(y[idx]),
                )
                for name, idx in parts.items()
            }
            self.batch_size = 16

        @property
        def sizes(self) -> dict[str, int]:
            return {name: len(t[0]) for name, t in self.split.items()}

        @property
        def steps_per_epoch(self) -> int:
            return -(-self.sizes["train"] // self.batch_size)

        def _batches(self, name: str) -> Batches:
            x, c, y = self.split[name]
            return Batches(
                [
                    (x[i : i + self.batch_size], c[i : i + self.batch_size], y[i : i + self.batch_size])
                    for i in range(0, len(y), self.batch_size)
                ]
            )

        def train_dataloader(self) -> Batches:
            return self._batches("train")

        def val_dataloader(self) -> Batches:
            return self._batches("val")

        def test_dataloader(self) -> Batches:
            return self._batches("test")

    return ToyData, ToyNet


@dataclass
class PreparedToy:
    data: Any

    def run_tags(self, precision: str) -> dict[str, str]:
        return {"studio.toy_columns": ", ".join(self.data.columns)}

    def lightning_module(self, spec: Any, steps_per_epoch: int, accumulate: int) -> Any:
        from lightning_modules.tabular.module import TabularLightningModule

        _, ToyNet = _lightning()
        return TabularLightningModule(
            ToyNet(len(self.data.columns)),
            "regression",
            1,
            spec.optimizer,
            spec.scheduler,
            spec.early_stopping.metric,
            spec.training.epochs,
            target_mean=self.data.target_mean,
            target_std=self.data.target_std,
            batch_size=self.data.batch_size,
            steps_per_epoch=steps_per_epoch,
            gradient_clip=spec.training.gradient_clip,
            accumulate=accumulate,
        )

    def after_test(self, run_id: str, spec: Any, module: Any) -> None:
        return None

    def write_bundle(self, folder: Path, spec: Any, module: Any, metrics: dict[str, float]) -> Path:
        """A studio bundle of the toy's own flavour: its description in ``studio_model.json`` and its own
        shipped code file (``toy_runtime``, :data:`TOY_RUNTIME`), read by the studio as any bundle."""
        from studio.bundle.writer import write_kind_bundle

        linear = module.net.linear
        target = spec.data.target
        info = {
            "kind": KIND,
            "predictor": {"module": "toy_runtime", "class": "ToyPredictor"},
            "task": TASK,
            "target": {"name": target, "task": "regression"},
            "input_columns": [{"name": c, "kind": "numeric"} for c in self.data.columns],
            "metrics": metrics,
            "spec": spec.model_dump(mode="json"),
            "toy": {
                "columns": self.data.columns,
                "mean": self.data.mean.tolist(),
                "std": self.data.std.tolist(),
                "weight": linear.weight.detach().reshape(-1).tolist(),
                "bias": float(linear.bias.detach()),
                "target_mean": self.data.target_mean,
                "target_std": self.data.target_std,
            },
        }
        state = {k: v.detach().cpu() for k, v in module.net.state_dict().items()}
        return write_kind_bundle(folder / "toy.zip", info, state, code={"toy_runtime": TOY_RUNTIME})

    def add_to_result(self, result: Any) -> None:
        result.ignored_columns = {}


TOY_RUNTIME = """
import numpy as np
import pandas as pd


class ToyPredictor:
    \"\"\"The toy's linear sum from its description alone (no torch needed to predict).\"\"\"

    def __init__(self, info):
        self.toy, self.target = info["toy"], info["target"]["name"]

    @classmethod
    def load(cls, info, weights_path, modules, files):
        return cls(info)

    def predict_input(self, rows):
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        toy = self.toy
        x = frame.reindex(columns=toy["columns"]).apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy()
        z = (x - np.array(toy["mean"])) / np.array(toy["std"])
        y = (z @ np.array(toy["weight"]) + toy["bias"]) * toy["target_std"] + toy["target_mean"]
        return pd.DataFrame({"predicted_" + self.target: y}, index=frame.index)
"""


class ToyModality:
    name = KIND
    views = "tests.modalities.toy_views"

    def device_plan(self, plan: Any) -> Any:
        return plan

    def prepare(self, spec: Any, dataset: Any, table: Any, profile: dict[str, Any]) -> PreparedToy:
        ToyData, _ = _lightning()
        return PreparedToy(ToyData(table, spec))

    def predict_file(self, bundle_zip: Path, info: dict[str, Any], data: Path) -> Any:
        from studio.modalities.tabular.modality import predict_table_file

        return predict_table_file(bundle_zip, info, data)


register(ToyModality())
