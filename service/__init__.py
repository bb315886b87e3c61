"""The HTTP service: predictions from registered models and a dataset API over the store."""

__all__ = [
    "adaptation",
    "app",
    "batching",
    "body",
    "config",
    "deps",
    "errors",
    "lookup",
    "middleware",
    "process_env",
    "routes",
    "schemas",
    "served",
]
