"""The errors caffe-compat raises. Each names the file, line or layer involved.

Every user-facing error derives from :class:`CaffeCompatError`; the CLI prints its
message on one line and exits with status 2 (``--debug`` shows the traceback).
"""
from __future__ import annotations

from typing import Optional


class CaffeCompatError(Exception):
    """Base class of every error caffe-compat reports to a user."""


class PrototxtError(CaffeCompatError):
    """A text-format (prototxt) file could not be parsed.

    >>> str(PrototxtError("unexpected '}'", path="net.prototxt", line=3, column=5))
    "net.prototxt:3:5: unexpected '}'"
    """

    def __init__(self, message: str, path: Optional[str] = None,
                 line: Optional[int] = None, column: Optional[int] = None):
        self.path, self.line, self.column, self.reason = path, line, column, message
        where = path or "<string>"
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}")


class SolverError(PrototxtError):
    """A solver prototxt that parses but cannot run: unknown ``type`` or ``lr_policy``, a
    policy without the values it reads (``step`` without ``stepsize`` ...).

    >>> str(SolverError('unknown lr_policy "setp"', path="solver.prototxt", line=4))
    'solver.prototxt:4: unknown lr_policy "setp"'
    """


class WeightsFormatError(CaffeCompatError):
    """A binary file (.caffemodel, .binaryproto, .solverstate, .h5) is truncated or corrupt.

    >>> str(WeightsFormatError("w.caffemodel", 1024, "a length-delimited field"))
    'w.caffemodel: corrupt or truncated at byte 1024: expected a length-delimited field'
    """

    def __init__(self, path: str, offset: Optional[int], expected: str):
        self.path, self.offset, self.expected = path, offset, expected
        at = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{path}: corrupt or truncated{at}: expected {expected}")


class LayerError(CaffeCompatError):
    """A layer cannot be built or run: unsupported type, bad parameter, shape mismatch.

    The message names the layer, its type and where it was defined.

    >>> str(LayerError("conv1", "Convolution", "kernel_size is required", path="n.prototxt", line=12))
    'n.prototxt:12: layer "conv1" (type Convolution): kernel_size is required'
    """

    def __init__(self, layer_name: str, layer_type: str, message: str,
                 path: Optional[str] = None, line: Optional[int] = None):
        self.layer_name, self.layer_type, self.reason = layer_name, layer_type, message
        self.path, self.line = path, line
        where = ""
        if path:
            where = f"{path}:{line}: " if line else f"{path}: "
        elif line:
            where = f"line {line}: "
        super().__init__(f'{where}layer "{layer_name}" (type {layer_type}): {message}')


class ImageReadError(CaffeCompatError):
    """An image file the decoder cannot read (corrupt, truncated, not an image).

    >>> str(ImageReadError("cat.jpg", "not an image OpenCV can decode"))
    'cat.jpg: cannot read the image: not an image OpenCV can decode'
    """

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: cannot read the image: {reason}")


class DeviceError(CaffeCompatError):
    """A device flag names a GPU this MXNet cannot use (``--gpu 0`` on a CPU-only build)."""


class WeightsMismatchError(CaffeCompatError):
    """Weights do not fit the net (shape or count mismatch), naming the layer."""


class WeightsMatchWarning(UserWarning):
    """A weights file that loads nothing into a net with learnable layers (a different
    net's .caffemodel, say): Caffe keeps the fillers silently; caffe-compat says so."""
