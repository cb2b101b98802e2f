"""The image data kind (pictures in, their class out): safe reading of picture zips into a data set
(``ingest``: limits, junk files, class folders, checks), and the kind's
:class:`~studio.modalities.base.Modality` (``modality``: device plan, DataModule and network, the test
pictures' confusion matrix, the image bundle, prediction from pictures, folders, zips or a CSV of paths)."""
