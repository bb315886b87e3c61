"""How every model this project logs is stored in MLflow: models-from-code plus a checked pickle.

MLflow's default for a Python object passed as ``python_model`` is to cloudpickle it, and loading
such a model runs whatever the pickle names (MLflow warns about it on every log call). Instead,
:func:`log_artifact_model` logs

- the code: :mod:`~hwsurrogate.surrogates.registry.model_code`, a three-line file that MLflow
  copies into the model and runs on load (``mlflow.models.set_model(ArtifactModel())``);
- the artifact ``model``: the task's own pyfunc (:class:`~.pyfunc.FrameModel`,
  :class:`~.pyfunc.LatencyPyfunc`, :class:`~.ops.OpsPyfunc`, :class:`~.fewshot_pyfunc.FewShotPyfunc`)
  pickled by us, with the fitted model inside it, plus any other artifacts the task needs.

:class:`ArtifactModel` reads the artifact back through :func:`load_model_artifact`, a restricted
unpickler (:mod:`hwsurrogate.safe_pickle`) that admits classes of this package and of the
libraries a fitted model is made of, and a short list of known reconstructors (numpy arrays,
torch tensors via ``torch.load(weights_only=True)``); any other global, ``os.system`` or a
function of an allowed library alike, is a :class:`~hwsurrogate.errors.ModelArtifactError` naming
it, before anything is called. ``predict`` is the task pyfunc's own ``predict``.

:func:`project_model` unwraps a loaded pyfunc to the task's pyfunc, for models logged this way
and for models registered before (cloudpickled task pyfuncs, which MLflow still loads its way).
"""

from __future__ import annotations

import importlib
import pickle
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from hwsurrogate.errors import ModelArtifactError
from hwsurrogate.safe_pickle import PickleRefusedError, restricted_loads

__all__ = [
    "MODEL_ARTIFACT",
    "MODEL_CODE",
    "MODEL_PACKAGES",
    "ArtifactModel",
    "load_model_artifact",
    "log_artifact_model",
    "model_requirements",
    "project_model",
]

#: the artifact key (and file) holding the task's pickled pyfunc
MODEL_ARTIFACT = "model"
#: the models-from-code file MLflow copies into every logged model
MODEL_CODE = Path(__file__).with_name("model_code.py")

#: what a logged model imports when MLflow loads it: this package (the model classes) and the
#: libraries its models and feature code use; torch and torch-geometric for the GNN models
MODEL_PACKAGES = ("hwsurrogate", "mlflow", "cloudpickle", "numpy", "pandas", "polars", "pyarrow", "scikit-learn",
                  "scipy", "treelite", "torch", "torch-geometric")  # fmt: skip

#: modules whose classes a model pickle may name (the module and its sub-modules)
_CLASS_MODULES = ("hwsurrogate", "sklearn", "numpy", "scipy", "treelite", "torch", "torch_geometric", "polars")
#: builtin and standard-library classes a model pickle may name
_STD_CLASSES = {
    ("builtins", n) for n in ("set", "frozenset", "slice", "complex", "bytearray", "range", "object", "int", "float")
} | {("collections", n) for n in ("OrderedDict", "defaultdict", "deque", "Counter")} | {
    ("inspect", n) for n in ("_empty", "Parameter", "_ParameterKind", "Signature")  # torch-geometric's layers
}
#: typing constructs torch-geometric's layers keep in their signatures (not typing's functions:
#: ``get_type_hints`` evaluates strings)
_TYPING = frozenset({"Any", "Callable", "DefaultDict", "Dict", "FrozenSet", "Iterable", "List", "Mapping",
                     "Optional", "OrderedDict", "Sequence", "Set",
                     "Tuple", "Type", "Union"})  # fmt: skip


def _type_of(obj: Any, *rest: Any) -> type:
    """``builtins.type`` with one argument (``type(None)`` in a pickled signature); never a new class."""
    if rest:
        raise PickleRefusedError("builtins.type with more than one argument (it would create a class)")
    return type(obj)


def _torch_from_bytes(data: bytes) -> Any:
    """``torch.storage._load_from_bytes``, but with torch's own restricted loader."""
    import io

    import torch

    if not isinstance(data, bytes):
        raise PickleRefusedError(f"torch storage from {type(data).__name__}; expected bytes")
    return torch.load(io.BytesIO(data), weights_only=True)


def _scalar(dtype: Any, data: Any = None) -> Any:
    """numpy's ``scalar`` reconstructor, refusing object dtypes (their payload would be read as pointers)."""
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise PickleRefusedError(f"a numpy scalar of dtype {dtype!r}; only plain dtypes are allowed")
    core = np._core if hasattr(np, "_core") else np.core
    return core.multiarray.scalar(dtype, data)


def _functions() -> dict[tuple[str, str], Any]:
    """Non-class globals a model pickle may name: reconstructors of numpy (arrays, scalars, random
    generators), torch (tensors) and copyreg; a string value is imported when first used."""
    import copyreg
    import operator

    import numpy as np

    out: dict[tuple[str, str], Any] = {("copyreg", "_reconstructor"): copyreg._reconstructor}
    out[("_operator", "getitem")] = out[("operator", "getitem")] = operator.getitem  # indexes built objects
    for core in ("numpy.core", "numpy._core"):
        mod = np._core if hasattr(np, "_core") else np.core
        out[(f"{core}.multiarray", "_reconstruct")] = mod.multiarray._reconstruct
        out[(f"{core}.multiarray", "scalar")] = _scalar
        out[(f"{core}.numeric", "_frombuffer")] = mod.numeric._frombuffer
    for name in ("__generator_ctor", "__bit_generator_ctor", "__randomstate_ctor"):  # fitted random states
        out[("numpy.random._pickle", name)] = f"numpy.random._pickle.{name}"
    out[("torch.storage", "_load_from_bytes")] = _torch_from_bytes
    for name in ("_rebuild_tensor_v2", "_rebuild_parameter"):
        out[("torch._utils", name)] = f"torch._utils.{name}"  # resolved on use: torch is imported lazily
    return out


_FUNCTIONS = _functions()


def _under(module: str, roots: tuple[str, ...]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def _resolve(module: str, name: str) -> Any:
    """The object a model pickle may use for ``module.name``, or None (refused)."""
    found = _FUNCTIONS.get((module, name))
    if isinstance(found, str):
        mod, _, attr = found.rpartition(".")
        return getattr(importlib.import_module(mod), attr)
    if found is not None:
        return found
    if module == "builtins" and name == "type":
        return _type_of
    if (module, name) in _STD_CLASSES or (module == "typing" and name in _TYPING):
        return getattr(importlib.import_module(module), name)
    if not _under(module, _CLASS_MODULES):
        return None
    # Cython's generic reconstructor of a cdef class (numpy's SeedSequence, scikit-learn's trees):
    # it checks the class's layout checksum, builds the (allowed) class and sets its state
    cython = name.startswith("__pyx_unpickle_") and "." not in name
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    # a class defined under an allowed module; functions (e.g. numpy's runstring, torch.load) and
    # names re-exported from elsewhere (os, pathlib, subprocess) are refused
    if cython and callable(obj):
        return obj
    return obj if isinstance(obj, type) and _under(str(obj.__module__), _CLASS_MODULES) else None


def load_model_artifact(path: str | Path) -> Any:
    """The task pyfunc pickled at ``path`` by :func:`log_artifact_model`, through the allow-list.

    Raises :class:`~hwsurrogate.errors.ModelArtifactError` naming the file and the refused global.
    """
    source = str(path)
    try:
        data = Path(path).read_bytes()
        model = restricted_loads(
            data, _resolve, source=source, why="which no model of this project is made of (only its own, "
            "scikit-learn, numpy, scipy, treelite, torch and torch-geometric classes are allowed)"
        )  # fmt: skip
    except PickleRefusedError as exc:
        raise ModelArtifactError(str(exc)) from None
    except Exception as exc:  # truncated / corrupt pickles raise many different types
        raise ModelArtifactError(f"{source}: not a readable model pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(model, mlflow.pyfunc.PythonModel):
        raise ModelArtifactError(f"{source}: holds a {type(model).__name__}, expected one of this project's pyfuncs")
    return model


class ArtifactModel(mlflow.pyfunc.PythonModel):
    """The pyfunc every model is logged as: the task's pyfunc, read from the ``model`` artifact."""

    python_model: Any = None  #: the task's pyfunc (set by ``load_context``)

    def load_context(self, context: Any) -> None:
        self.python_model = load_model_artifact(context.artifacts[MODEL_ARTIFACT])
        self.python_model.load_context(context)  # e.g. the few-shot model reads its .npz artifact

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        if self.python_model is None:
            raise ModelArtifactError("ArtifactModel.predict before load_context: load it with mlflow.pyfunc.load_model")
        return self.python_model.predict(context, model_input, params)


def project_model(loaded: Any) -> Any:
    """The task's pyfunc inside a loaded MLflow pyfunc (``mlflow.pyfunc.load_model``'s result).

    Models logged by :func:`log_artifact_model` hold it in :class:`ArtifactModel`; models logged
    before are the cloudpickled task pyfunc itself. Raises what ``unwrap_python_model`` raises for
    a model that is not a Python-model pyfunc.
    """
    inner = loaded.unwrap_python_model()
    return inner.python_model if isinstance(inner, ArtifactModel) else inner


def model_requirements() -> list[str]:
    """``pip_requirements`` for every model this project logs: :data:`MODEL_PACKAGES` pinned to
    the installed versions (a package that is not installed is listed unpinned).

    Declared, because MLflow's inference of them loads the model in a subprocess to see what it
    imports: 20 s per logged model on the 2-core machine (at load ~9; 0.6 s declared), on every
    ``hws train`` and in every test that logs a model. It found the same packages.
    """
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    def pinned(name: str) -> str:  # the public version: a local label (torch's +cpu) is not on PyPI
        try:
            return f"{name}=={Version(version(name)).public}"
        except PackageNotFoundError:
            return name

    return [pinned(n) for n in MODEL_PACKAGES]


def log_artifact_model(
    python_model: mlflow.pyfunc.PythonModel, *, artifacts: dict[str, str] | None = None, **kwargs: Any
) -> Any:
    """Log ``python_model`` (a task pyfunc) as ``model`` from code, pickled as the ``model``
    artifact beside ``artifacts``; ``kwargs`` (signature, input_example) go to
    ``mlflow.pyfunc.log_model``. Returns MLflow's ModelInfo.

    The pickle is read back through :func:`load_model_artifact` first, so a model holding
    something the loader refuses fails here, at training, not when it is served.
    """
    if artifacts and MODEL_ARTIFACT in artifacts:
        raise ValueError(f"artifact name {MODEL_ARTIFACT!r} is reserved for the pickled model")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pkl"
        path.write_bytes(pickle.dumps(python_model, protocol=pickle.HIGHEST_PROTOCOL))
        load_model_artifact(path)
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts={MODEL_ARTIFACT: str(path), **(artifacts or {})},
            pip_requirements=model_requirements(),
            **kwargs,
        )
