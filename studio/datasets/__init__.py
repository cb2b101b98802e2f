"""Data sets: read CSV files as spreadsheets save them, profile them, and keep them in the store.

Cheap to import (pandas only; scikit-learn only when a sample is added), so pages can use it freely.
"""

from studio.datasets.csv_ingest import MAX_COLUMNS, read_table_file
from studio.datasets.profile import (
    KINDS,
    TARGET_WARNING_CODES,
    column_profile,
    profile_table,
    suggest_target,
    suggest_task,
    target_warnings,
    warnings_for_target,
)
from studio.datasets.resolve import resolve_dataset
from studio.datasets.samples import SAMPLES, add_sample
from studio.datasets.store import (
    DatasetInfo,
    add_csv,
    delete_dataset,
    get_dataset,
    list_datasets,
    load_profile,
    load_table,
)

__all__ = [
    "KINDS",
    "MAX_COLUMNS",
    "SAMPLES",
    "TARGET_WARNING_CODES",
    "DatasetInfo",
    "add_csv",
    "add_sample",
    "column_profile",
    "delete_dataset",
    "get_dataset",
    "list_datasets",
    "load_profile",
    "load_table",
    "profile_table",
    "read_table_file",
    "resolve_dataset",
    "suggest_target",
    "suggest_task",
    "target_warnings",
    "warnings_for_target",
]
