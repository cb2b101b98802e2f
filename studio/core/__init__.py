"""What every layer shares, and nothing else of the studio: the run spec and the network catalogue
(``spec``), what each task is (``tasks``), the user-facing error types (``errors``), settings read from
the environment (``settings``), showing user text as text (``text``), GPU discovery and signals without
torch (``system``), Lightning imported without torchmetrics' unused extras (``lean_imports``),
pretrained-weight files (``pretrained``), the one definition of picture augmentation (``augment``), and
the code shipped inside every model bundle (``runtime``: networks and preprocessing; ``image_io``:
reading pictures). It imports no other studio package (``tests/test_import_graph.py``), so Lightning
code, data kinds, jobs, pages and the CLI can all depend on it.
"""
