"""Lightning DataModules, LightningModules, callbacks and the architecture registry.

Organised by kind: ``tabular/`` and ``image/`` (each a DataModule and a LightningModule; ``image/networks``
adds pretrained weights and freezing). Shared: ``callbacks`` and ``registry`` (network name -> builder).
The networks themselves live in ``studio.core.runtime`` (bundles rebuild them without the studio); the
LightningModules receive them ready-made.
"""
