"""Training: ``training.train(spec) -> TrainResult``, the one function the CLI, the job worker and the
tests call. It owns the MLflow run, the Lightning loop with the studio's callbacks, checkpoints and
resuming, the out-of-memory retry and divergence handling; everything that depends on the kind of data
it asks of the task's data kind (``studio.modalities``)."""
