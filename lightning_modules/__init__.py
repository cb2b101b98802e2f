"""Lightning DataModules, LightningModules, callbacks and the architecture registry.

Organised by kind: ``tabular/`` and ``image/`` (each a DataModule and a LightningModule; ``image/networks``
adds pretrained weights and freezing). Shared: ``callbacks`` and ``registry`` (network name -> builder).
The networks themselves live in ``studio.core.runtime`` (bundles rebuild them without the studio); the
LightningModules receive them ready-made.
"""

from studio.core import lean_imports

lean_imports.install()  # when Lightning code is imported before ``studio`` (see studio.core.lean_imports)
