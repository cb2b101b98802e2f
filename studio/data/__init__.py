"""Stored data sets: the store under ``STUDIO_HOME/datasets`` (``store``: add, list, load; deleting a
data set is :func:`studio.jobs.delete_dataset`, which refuses while a job trains on it), turning a user's argument into a data set (``resolve``: a file, an
id or ``sample:NAME``) and the bundled samples (``samples``). The package re-exports the data kinds'
ingest functions too (CSV reading and profiles from ``studio.modalities.tabular``, picture zips checked
by ``studio.modalities.image`` and stored by ``images``), so callers have one place to import data sets
from. The data kinds never import this package: the engine hands them the table it loaded.

Cheap to import (pandas and Pillow only; scikit-learn only when a sample is added), so pages can use it freely.
"""

from studio.data.images import add_image_zip, image_paths
from studio.data.naming import readable_run_name
from studio.data.resolve import add_data_file, resolve_dataset
from studio.data.samples import SAMPLES, add_sample
from studio.data.store import (
    DatasetInfo,
    add_csv,
    get_dataset,
    list_datasets,
    load_profile,
    load_table,
)
from studio.modalities.image.ingest import (
    KIND_IMAGES,
    ZipLimits,
    image_defaults,
    is_zip,
    mirroring_changes_meaning,
    named_like_picture,
)
from studio.modalities.tabular.ingest import MAX_COLUMNS, read_table_file
from studio.modalities.tabular.profile import (
    KINDS,
    TARGET_WARNING_CODES,
    column_profile,
    column_readings,
    profile_table,
    suggest_target,
    suggest_task,
    target_warnings,
    task_for_target,
    text_description,
    warnings_for_target,
)

__all__ = [
    "KINDS",
    "KIND_IMAGES",
    "MAX_COLUMNS",
    "SAMPLES",
    "TARGET_WARNING_CODES",
    "DatasetInfo",
    "ZipLimits",
    "add_csv",
    "add_data_file",
    "add_image_zip",
    "add_sample",
    "column_profile",
    "column_readings",
    "get_dataset",
    "image_defaults",
    "image_paths",
    "is_zip",
    "list_datasets",
    "load_profile",
    "load_table",
    "mirroring_changes_meaning",
    "named_like_picture",
    "profile_table",
    "read_table_file",
    "readable_run_name",
    "resolve_dataset",
    "suggest_target",
    "suggest_task",
    "task_for_target",
    "text_description",
    "target_warnings",
    "warnings_for_target",
]
