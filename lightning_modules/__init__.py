"""Lightning DataModules, LightningModules, callbacks and the architecture registry.

Plain ``nn.Module`` networks live in ``components/``; the LightningModules receive them ready-made.
"""
