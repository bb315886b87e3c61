"""The project's exception hierarchy, named after what went wrong.

Every message names the field (column, file, parameter) and the offending value, so a user
can fix the input without reading code.
"""

from __future__ import annotations


class HwSurrogateError(Exception):
    """Base class of every error this project raises on purpose."""


class SchemaMismatchError(HwSurrogateError, ValueError):
    """A frame does not fit a table's declared schema (names the column and the value).

    ``column`` and ``row`` (0-based, in the frame as given) are set when one value is to blame,
    so the service can answer 422 with ``field`` ``rows.<row>.<column>``.
    """

    def __init__(self, message: str, *, column: str | None = None, row: int | None = None) -> None:
        super().__init__(message)
        self.column = column
        self.row = row


class SourceFormatError(HwSurrogateError, ValueError):
    """A source file is malformed, truncated or has unexpected columns (names the file)."""


class SourceNotFoundError(HwSurrogateError, FileNotFoundError):
    """A public data source is not present at the given or default path."""


class UnknownSourceError(HwSurrogateError, KeyError):
    """An importer name that the registry does not know."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown source"


class UnknownDeviceError(HwSurrogateError, KeyError):
    """A device id that is neither imported, collected nor registered."""

    def __init__(self, device_id: str, known: list[str] | None = None) -> None:
        self.device_id = device_id
        self.known = known or []
        super().__init__(device_id)

    def __str__(self) -> str:
        hint = f"; known devices include {', '.join(self.known[:8])}" if self.known else ""
        return f"unknown device_id {self.device_id!r}{hint}"


class StoreError(HwSurrogateError):
    """The dataset store could not complete an operation (it is left unchanged)."""


class CollectorError(HwSurrogateError, ValueError):
    """A collector was given bad parameters or its toolchain is missing."""


class TrainingDataError(HwSurrogateError, ValueError):
    """Training was asked for on empty, NaN or otherwise unusable data."""


class ModelSourceError(HwSurrogateError, ValueError):
    """A user's model (ONNX file, ``file.py:callable``, config.json) cannot be read, built or traced,
    or its input shape does not fit it (names the source, the field and the op)."""

    def __init__(self, message: str, *, field: str = "model") -> None:
        self.field = field
        super().__init__(message)


class ModelArtifactError(HwSurrogateError, ValueError):
    """A logged model's artifact cannot be read, or its pickle names a global the model loader
    does not allow (names the file and the global; nothing it names is called)."""
