"""Plain ``nn.Module`` networks. The tabular network lives in ``studio.bundle_runtime`` because model
bundles ship that file and must rebuild the network without the studio installed."""

from studio.bundle_runtime import TabularNet

__all__ = ["TabularNet"]
