"""steer: local routed reasoning between small and large GGUF models."""

__version__ = "0.1.0"
