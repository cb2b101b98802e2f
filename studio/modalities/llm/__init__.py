"""The language-model data kind: fine-tune a pretrained causal language model (LoRA through ``peft``, or
all its weights for a small one) on examples of prompts and answers, chats or plain text."""
