"""lens-emotion: how LLMs infer and express emotions, on TransformerLens hooked models."""

__version__ = "0.1.0"
