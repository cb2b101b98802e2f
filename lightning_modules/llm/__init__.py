"""The LightningModule and DataModule that fine-tune a causal language model (``transformers`` + ``peft``)."""
