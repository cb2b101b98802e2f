"""Lightning code for tables: the DataModule (``data``: splits, preprocessing, batches as in-memory
chunks) and the LightningModule (``module``). The network itself, ``TabularNet``, lives in
``studio.core.runtime``: model bundles ship that file and rebuild the network without the studio."""
