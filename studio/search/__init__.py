"""Automatic search for the best settings ("Find the best settings"): an Optuna study per search whose
trials are ordinary jobs, each tracked as an MLflow child run of the search's parent run.

- :mod:`studio.search.space`: what is searched, per data kind and network, and a user's narrowing;
- :mod:`studio.search.study`: the study's storage, sampler and pruner;
- :mod:`studio.search.records`: the searches table the pages and the CLI read;
- :mod:`studio.search.control`: start, cancel, resume/extend, the driver process;
- :mod:`studio.search.driver`: the loop that asks for trials, queues them and tells their results;
- :mod:`studio.search.pruning`: a trial's per-epoch reports and pruning, inside its job worker.

Importing this package is cheap: optuna, torch and mlflow load only where a search runs.
"""
