"""What is persisted about models: MLflow tracking and registration, loading a registered version as a
Predictor, the pyfunc wrappers, local copies of registered versions, and the one store of adapted devices."""

__all__ = ["adapted", "cache", "fewshot_pyfunc", "loading", "ops", "pyfunc", "tracking"]
