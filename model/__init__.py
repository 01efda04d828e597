"""The XLM-style Transformer, its objectives, training loop and evaluation (built on pipeline/ outputs)."""
