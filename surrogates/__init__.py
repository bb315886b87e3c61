"""Surrogates: the one feature pipeline, tree / GNN / few-shot models, MLflow training and registry."""
