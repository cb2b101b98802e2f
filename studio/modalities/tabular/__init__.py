"""The tabular data kind (tables in, a category or a number out): CSV reading and sniffing
(``ingest``), column profiles, warnings and suggestions (``profile``), which columns feed the model and
the DataModule factory (``prepare``), and the kind's :class:`~studio.modalities.base.Modality`
(``modality``: LightningModule, tags, bundle, prediction from a table)."""
