"""pycaffe's net specification API (``caffe.NetSpec``, ``caffe.layers``, ``caffe.params``).

Write a net in Python and get Caffe's ``NetParameter`` back; ``str()`` of it is the
prototxt text pycaffe writes for the same generator code (protobuf's text format
prints fields in field-number order and ``caffe_pb2`` has Caffe's field numbers)::

    import caffe_compat as caffe
    from caffe_compat import layers as L, params as P

    n = caffe.NetSpec()
    n.data, n.label = L.Data(batch_size=64, backend=P.Data.LMDB, source="train_lmdb",
                             transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.conv1, in_place=True)      # top stays "conv1"
    n.loss = L.SoftmaxWithLoss(n.relu1, n.label)
    open("train.prototxt", "w").write(str(n.to_proto()))

How keyword arguments are placed (as pycaffe's ``net_spec.py`` does):

* ``ntop=k`` sets the number of tops (0 returns the :class:`Function` itself,
  1 a :class:`Top`, more a tuple of Tops); ``in_place=True`` makes the tops the
  bottoms' blobs;
* a name ending in ``param`` (``param=``, ``transform_param=``, ``convolution_param=``)
  is a field of ``LayerParameter``;
* any other name goes into the layer type's own ``<type>_param`` message
  (``num_output`` of a Convolution -> ``convolution_param.num_output``) and, when that
  message has no such field or the type has none, into ``LayerParameter`` itself
  (``loss_weight=``, ``include=dict(phase=0)``, ``name=``);
* values: a dict fills a sub-message, a list fills a repeated field (a list of dicts
  adds one message per dict), a single value given to a repeated field becomes a
  one-element list, enums take ``P.<Type>.<NAME>`` or the name as a string.

Names: a blob or layer assigned to a NetSpec attribute gets that name; the rest get
``<Type><count>`` (``Convolution1``), counted per type in generation order. A layer
is named after its first top, so an in-place layer's name is its NetSpec attribute
while its top keeps the bottom's blob name.

Beyond pycaffe (where pycaffe raises): tuples are accepted like lists, an empty
list leaves the field unset, and errors name the layer and the misplaced field.
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any, Dict, Union

from google.protobuf.message import Message

from caffe_compat.proto import caffe_pb2

__all__ = ["param_name_dict", "to_proto", "assign_proto", "Top", "Function", "NetSpec",
           "Layers", "Parameters", "layers", "params"]


def param_name_dict() -> Dict[str, str]:
    """Layer type -> the prefix of its ``*_param`` field in ``LayerParameter``.

    Derived as pycaffe does: each ``LayerParameter`` field ending in ``_param`` is
    paired with its message type's name minus ``Parameter``, so types whose message
    does not carry their name are absent (Deconvolution uses ``convolution_param``)
    and some entries are not layer types (``Transformation`` -> ``transform``).

    >>> d = param_name_dict()
    >>> d["Convolution"], d["InnerProduct"], d["Transformation"], "Deconvolution" in d
    ('convolution', 'inner_product', 'transform', False)
    """
    names: Dict[str, str] = {}
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith("_param") and field.message_type is not None:
            names[field.message_type.name[:-len("Parameter")]] = field.name[:-len("_param")]
    return names


def to_proto(*tops: "Top") -> caffe_pb2.NetParameter:
    """A ``NetParameter`` with every layer needed to compute ``tops`` (all auto-named).

    >>> from caffe_compat.net_spec import layers as L
    >>> x = L.Input(shape=dict(dim=[1, 3]))
    >>> [layer.name for layer in to_proto(L.ReLU(x)).layer]
    ['Input1', 'ReLU1']
    """
    built: "OrderedDict[Function, caffe_pb2.LayerParameter]" = OrderedDict()
    autonames: Counter = Counter()
    for top in tops:
        top.fn._to_proto(built, {}, autonames)
    net = caffe_pb2.NetParameter()
    net.layer.extend(built.values())
    return net


def _as_list(val: Any) -> Any:
    return list(val) if isinstance(val, tuple) else val


def assign_proto(proto: Message, name: str, val: Any) -> None:
    """Sets field ``name`` of ``proto`` from a Python value, recursively.

    Dicts fill sub-messages, lists fill repeated fields (a list of dicts adds one
    message per dict), a single value given to a repeated field becomes a
    one-element list; anything else is assigned (enum fields take the value or its
    name). Unknown fields raise ``AttributeError`` as protobuf does.

    >>> layer = caffe_pb2.LayerParameter()
    >>> assign_proto(layer, "param", [dict(lr_mult=1), dict(lr_mult=2, decay_mult=0)])
    >>> assign_proto(layer.convolution_param, "kernel_size", 3)      # repeated field
    >>> assign_proto(layer, "pooling_param", dict(pool="AVE", stride=2))
    >>> len(layer.param), list(layer.convolution_param.kernel_size), layer.pooling_param.pool
    (2, [3], 1)
    """
    field = getattr(proto, name)
    is_repeated = hasattr(field, "extend")
    val = _as_list(val)
    if is_repeated and not isinstance(val, list):
        val = [val]
    if isinstance(val, list):
        if val and isinstance(val[0], dict):
            for item in val:
                message = field.add()
                for key, value in item.items():
                    assign_proto(message, key, value)
        elif val:
            field.extend(val)
    elif isinstance(val, dict):
        for key, value in val.items():
            assign_proto(field, key, value)
    else:
        setattr(proto, name, val)


def _reason(exc: AttributeError) -> str:
    text = str(exc)
    return f"no field {text!r}" if text.isidentifier() else text


class Top:
    """One output blob of a layer: output ``n`` of :class:`Function` ``fn``."""

    def __init__(self, fn: "Function", n: int):
        self.fn = fn
        self.n = n

    def to_proto(self) -> caffe_pb2.NetParameter:
        """A ``NetParameter`` with every layer needed to compute this top."""
        return to_proto(self)

    def _to_proto(self, built, names, autonames) -> None:
        self.fn._to_proto(built, names, autonames)

    def __repr__(self) -> str:
        return f"<Top {self.n} of {self.fn.type_name}>"


class Function:
    """A layer: its type, its input :class:`Top` objects and its keyword parameters.

    ``ntop`` (default 1) and ``in_place`` (default False) are taken out of the
    keyword parameters; the rest become layer fields when the net is generated.
    """

    def __init__(self, type_name: str, inputs: tuple, params: Dict[str, Any]):
        self.type_name = type_name
        for index, inp in enumerate(inputs):
            if not isinstance(inp, Top):
                raise TypeError("%s input %d is not a Top (type is %s)"
                                % (type_name, index, type(inp)))
        self.inputs = inputs
        self.params = params
        self.ntop = self.params.pop("ntop", 1)
        self.in_place = self.params.pop("in_place", False)
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def __repr__(self) -> str:
        return f"<Function {self.type_name} ({len(self.inputs)} in, {self.ntop} out)>"

    def _get_name(self, names, autonames) -> str:
        # A layer takes its first top's name; a layer without tops counts its type.
        if self not in names:
            if self.ntop > 0:
                names[self] = self._get_top_name(self.tops[0], names, autonames)
            else:
                autonames[self.type_name] += 1
                names[self] = self.type_name + str(autonames[self.type_name])
        return names[self]

    def _get_top_name(self, top: Top, names, autonames) -> str:
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = top.fn.type_name + str(autonames[top.fn.type_name])
        return names[top]

    def _assign_param(self, layer: caffe_pb2.LayerParameter, key: str, value: Any) -> None:
        # pycaffe's placement: "*param" keys go on the layer; other keys go in the
        # type's *_param message, or on the layer when that message has no such field.
        failures = []
        prefix = _param_names.get(self.type_name)
        if not key.endswith("param") and prefix is not None:
            try:
                assign_proto(getattr(layer, prefix + "_param"), key, value)
                return
            except AttributeError as exc:
                failures.append(f"{prefix}_param: {_reason(exc)}")
        try:
            assign_proto(layer, key, value)
        except AttributeError as exc:
            failures.append(f"LayerParameter: {_reason(exc)}")
            if prefix is None and not key.endswith("param"):
                failures.append(f"{self.type_name} has no {self.type_name}Parameter: give "
                                f"{key} inside the *_param message it reads (e.g. a "
                                f"Deconvolution's convolution_param=dict({key}=...))")
            raise AttributeError(f"layer {layer.name!r} (type {self.type_name}): cannot set "
                                 f"{key}={value!r} ({'; '.join(failures)})") from None

    def _to_proto(self, built, names, autonames) -> None:
        if self in built:
            return
        bottom_names = []
        for inp in self.inputs:
            inp._to_proto(built, names, autonames)
            bottom_names.append(built[inp.fn].top[inp.n])
        layer = caffe_pb2.LayerParameter()
        layer.type = self.type_name
        layer.bottom.extend(bottom_names)
        if self.in_place:
            layer.top.extend(layer.bottom)
        else:
            for top in self.tops:
                layer.top.append(self._get_top_name(top, names, autonames))
        layer.name = self._get_name(names, autonames)
        for key, value in self.params.items():
            self._assign_param(layer, key, value)
        built[self] = layer


class TopNotFound(AttributeError, KeyError):
    """``NetSpec`` has no top of that name (a KeyError, as in pycaffe, and an
    AttributeError, so ``hasattr``/``getattr`` with a default work)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NetSpec:
    """Named tops: assign layers' outputs to attributes, then :meth:`to_proto`.

    >>> from caffe_compat.net_spec import layers as L
    >>> n = NetSpec()
    >>> n.data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    >>> n.relu = L.ReLU(n.data, in_place=True)
    >>> [(l.name, list(l.top)) for l in n.to_proto().layer]
    [('data', ['data']), ('relu', ['data'])]
    """

    def __init__(self):
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name: str, value: Union[Top, Function]) -> None:
        self.tops[name] = value

    def __getattr__(self, name: str) -> Union[Top, Function]:
        try:
            return self.tops[name]
        except KeyError:
            raise TopNotFound(f"NetSpec has no top named {name!r}") from None

    def __setitem__(self, key: str, value: Union[Top, Function]) -> None:
        self.__setattr__(key, value)

    def __getitem__(self, item: str) -> Union[Top, Function]:
        return self.__getattr__(item)

    def __delitem__(self, name: str) -> None:
        del self.tops[name]

    def keys(self) -> list:
        return list(self.tops.keys())

    def vals(self) -> list:
        return list(self.tops.values())

    def to_proto(self) -> caffe_pb2.NetParameter:
        """A ``NetParameter`` with the layers producing every assigned top, in
        assignment order (each layer after the layers it depends on)."""
        for name, top in self.tops.items():
            if not hasattr(top, "_to_proto"):
                raise TypeError(
                    f"NetSpec.{name} holds a {type(top).__name__}, not a Top: a layer with "
                    f"ntop>1 returns a tuple; assign it to several names "
                    f"(n.data, n.label = L.Data(..., ntop=2))")
        names = {v: k for k, v in self.tops.items()}
        autonames: Counter = Counter()
        built: "OrderedDict[Function, caffe_pb2.LayerParameter]" = OrderedDict()
        for top in self.tops.values():
            top._to_proto(built, names, autonames)
        net = caffe_pb2.NetParameter()
        net.layer.extend(built.values())
        return net


class Layers:
    """``L.<Type>(*bottoms, **params)`` makes a layer of that type (see module doc)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def layer_fn(*args: Top, **kwargs: Any):
            fn = Function(name, args, kwargs)
            if fn.ntop == 0:
                return fn
            if fn.ntop == 1:
                return fn.tops[0]
            return fn.tops
        layer_fn.__name__ = name
        return layer_fn


class Parameters:
    """``P.<Type>.<NAME>``: the enum value ``caffe_pb2.<Type>Parameter.<NAME>``.

    >>> params.Pooling.MAX == caffe_pb2.PoolingParameter.MAX
    True
    """

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        message = getattr(caffe_pb2, name + "Parameter")

        class Param:
            def __getattr__(self, param_name: str):
                return getattr(message, param_name)
        return Param()


_param_names = param_name_dict()
layers = Layers()
params = Parameters()
