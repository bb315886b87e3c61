"""The models-from-code file of every model this project logs (see :mod:`.artifact_model`).

MLflow copies this file into each logged model and runs it when the model is loaded; it only
names the class, so fixes to the loader reach models already logged.
"""

from mlflow.models import set_model

from hwsurrogate.surrogates.registry.artifact_model import ArtifactModel

set_model(ArtifactModel())
