"""The base class of every Caffe layer, and the registry of layer types.

A layer is a Gluon ``HybridBlock`` whose life follows Caffe's ``Layer``:

* ``__init__(param, phase)``: keep the ``LayerParameter`` (the single source of truth);
* ``setup(bottom_shapes)``: Caffe's ``LayerSetUp``; declare learnable blobs with
  :meth:`Layer.add_blob`, in Caffe's blob order and with Caffe's blob shapes;
* ``reshape(bottom_shapes) -> top_shapes``: Caffe's ``Reshape``; validate and store any
  shape-dependent attribute used by ``hybrid_forward`` (it runs again whenever an input
  shape changes, so one net serves 227x227 and 500x375 images);
* ``hybrid_forward(F, *bottoms, **blobs) -> tuple of tops``: Caffe's ``Forward``; the
  backward pass is MXNet's autograd of it, which each layer keeps equal to Caffe's
  ``Backward`` (where they would differ, the layer says how it reproduces Caffe).

Register a new type with :func:`register_layer`::

    import caffe_compat
    from caffe_compat.engine.layer import Layer

    @caffe_compat.register_layer("Double")
    class Double(Layer):
        def reshape(self, bottom_shapes):
            return [bottom_shapes[0]]
        def hybrid_forward(self, F, x):
            return (x * 2,)
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

import mxnet as mx

from caffe_compat.errors import LayerError

Shape = tuple

#: Every known layer type name -> its Layer class.
LAYER_TYPES: dict[str, type] = {}


def register_layer(*type_names: str, origin: str = "user") -> Callable[[type], type]:
    """Class decorator registering a :class:`Layer` subclass under Caffe type names.

    ``origin`` says where the type comes from ("BVLC", a fork's name, or "user"); it is
    shown by ``caffe-compat info --layers``.
    """
    if not type_names:
        raise ValueError("register_layer needs at least one Caffe type name")

    def decorate(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, Layer)):
            raise TypeError(f"{cls!r} must subclass caffe_compat.engine.layer.Layer")
        cls.type_names = tuple(type_names)
        cls.origin = origin
        for name in type_names:
            LAYER_TYPES[name] = cls
        return cls

    return decorate


def layer_class(type_name: str) -> Optional[type]:
    """The registered class for a Caffe type name, or None."""
    from caffe_compat.engine import layers  # noqa: F401  (registers the built-in types)
    return LAYER_TYPES.get(type_name)


def supported_types() -> list[str]:
    """Sorted names of every layer type the engine can build."""
    from caffe_compat.engine import layers  # noqa: F401
    return sorted(LAYER_TYPES)


class Layer(mx.gluon.HybridBlock):
    """One Caffe layer. Subclasses implement ``reshape`` and ``hybrid_forward``.

    Attributes set for subclasses: ``param`` (the LayerParameter), ``phase``
    (``caffe_pb2.TRAIN`` or ``TEST``), ``blob_names`` (learnable blobs in Caffe order),
    ``blob_fillers`` (name -> FillerParameter used by :meth:`fill_blobs`).
    """

    type_names: tuple = ()
    origin: str = "user"
    #: Default loss_weight of top 0 when the prototxt gives none (Caffe: 1 for *Loss).
    default_loss_weight: float = 0.0
    #: False for layers whose Caffe Backward computes no parameter diffs (BatchNorm's
    #: statistics): their blobs get grad_req 'null' and are never trained.
    computes_param_diffs: bool = True
    #: False for layers whose Caffe Backward is NOT_IMPLEMENTED (ArgMax, Accuracy, ...).
    has_backward: bool = True
    #: Caffe's AutoTopBlobs: how many anonymous tops a layer given none still produces
    #: (1 for every LossLayer, whose loss top is then "(automatic)").
    auto_top_blobs: int = 0

    def __init__(self, param, phase: int):
        super().__init__(prefix=param.name + "_")
        self.param = param
        self.phase = int(phase)
        self.blob_names: list[str] = []
        self.blob_fillers: dict[str, object] = {}
        self.source: tuple[Optional[str], Optional[int]] = (None, None)
        self.bottom_shapes: list[Shape] = []
        self.top_shapes: list[Shape] = []

    # ---- Caffe's lifecycle -------------------------------------------------------
    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        """Caffe's LayerSetUp: declare learnable blobs (called once, first shapes)."""

    def reshape(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        """Caffe's Reshape: return the top shapes for these bottom shapes."""
        raise NotImplementedError

    def allow_backward(self, bottom_index: int) -> bool:
        """Caffe's AllowForceBackward: False for bottoms such as labels."""
        return True

    def passes_bottom_through(self) -> bool:
        """True when every top equals bottom 0 unchanged (Split; Dropout at TEST): the
        whole-net block then binds the tops to the bottom instead of copying it."""
        return False

    # ---- helpers for subclasses -------------------------------------------------
    @property
    def name(self) -> str:
        return self.param.name

    @property
    def type(self) -> str:
        return self.param.type

    def error(self, message: str) -> LayerError:
        """A LayerError naming this layer, its type and where it was defined."""
        path, line = self.source
        return LayerError(self.param.name, self.param.type, message, path=path, line=line)

    def add_blob(self, name: str, shape: Sequence[int], filler=None) -> mx.gluon.Parameter:
        """Declare learnable blob number ``len(blob_names)`` with Caffe's shape.

        ``filler`` (a FillerParameter, None = constant 0) fills it on
        :meth:`fill_blobs`; the ParamSpec at the same index gives lr/decay multipliers.
        """
        index = len(self.blob_names)
        spec = self.param.param[index] if index < len(self.param.param) else None
        p = self.params.get(name, shape=tuple(int(s) for s in shape), dtype="float32",
                            init=mx.init.Zero(), allow_deferred_init=False,
                            lr_mult=spec.lr_mult if spec is not None else 1.0,
                            wd_mult=spec.decay_mult if spec is not None else 1.0)
        setattr(self, name, p)
        self.blob_names.append(name)
        self.blob_fillers[name] = filler
        return p

    def share_blob(self, name: str, param: mx.gluon.Parameter) -> None:
        """Make blob ``name`` the same Parameter object as ``param`` (Caffe's weight
        sharing and ShareTrainedLayersWith). Gluon forbids re-assigning a Parameter
        attribute, so the registries are updated directly."""
        old = getattr(self, name)
        self._reg_params[name] = param
        object.__setattr__(self, name, param)
        registry = self.params._params
        registry.pop(old.name, None)
        registry[param.name] = param

    def blobs(self) -> list[mx.gluon.Parameter]:
        """Learnable blobs in Caffe order (``layer.blobs[i]`` in pycaffe)."""
        return [getattr(self, n) for n in self.blob_names]

    def fill_blobs(self, skip: Iterable[int] = ()) -> None:
        """Fill every blob with its Caffe filler (after ``initialize``); ``skip`` holds
        ``id()``s of Parameters to leave as they are (weights already loaded into them)."""
        from caffe_compat.engine.fillers import fill
        for name in self.blob_names:
            p = getattr(self, name)
            if id(p) in skip:
                continue
            p.set_data(mx.nd.array(fill(self.blob_fillers[name], p.shape), dtype="float32"))

    def loss_weights(self, num_tops: int) -> list[float]:
        """Caffe's SetLossWeights: the prototxt's loss_weight, else the type default."""
        if len(self.param.loss_weight):
            if len(self.param.loss_weight) != num_tops:
                raise self.error(f"loss_weight must be given once per top ({num_tops})")
            return [float(w) for w in self.param.loss_weight]
        return [self.default_loss_weight] + [0.0] * (num_tops - 1)

    def check_bottoms(self, bottom_shapes: Sequence[Shape], exactly: Optional[int] = None,
                      at_least: Optional[int] = None, at_most: Optional[int] = None) -> None:
        """Caffe's ExactNumBottomBlobs/MinBottomBlobs/MaxBottomBlobs checks."""
        n = len(bottom_shapes)
        if exactly is not None and n != exactly:
            raise self.error(f"takes exactly {exactly} bottom blob(s), got {n}")
        if at_least is not None and n < at_least:
            raise self.error(f"takes at least {at_least} bottom blob(s), got {n}")
        if at_most is not None and n > at_most:
            raise self.error(f"takes at most {at_most} bottom blob(s), got {n}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.param.name!r}, type={self.param.type!r})"


def canonical_axis(axis: int, num_axes: int) -> int:
    """Caffe's Blob::CanonicalAxisIndex: negative axes count from the end."""
    if not -num_axes <= axis < max(num_axes, 1):
        raise IndexError(f"axis {axis} out of range for a {num_axes}-D blob")
    return axis + num_axes if axis < 0 else axis


def count(shape: Sequence[int], start: int = 0, end: Optional[int] = None) -> int:
    """Caffe's Blob::count(start, end): product of the dims in [start, end)."""
    n = 1
    for d in list(shape)[start:end]:
        n *= int(d)
    return n
