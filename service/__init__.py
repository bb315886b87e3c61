"""The HTTP service: predictions from registered models and a dataset API over the store."""
