"""Surrogates: the one feature pipeline, tree / GNN / few-shot models, MLflow training and registry, and the
served-or-adapted prediction dispatch with its training domains. Sub-packages load on first import (torch only where needed)."""

__all__ = ["adapt", "api", "distributed", "domain", "features", "fewshot", "models", "predict", "registry", "training"]
