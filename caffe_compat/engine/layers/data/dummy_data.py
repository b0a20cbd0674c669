"""Caffe's DummyData layer (dummy_data_layer.cpp): tops made by fillers."""
from __future__ import annotations

from typing import Sequence

from caffe_compat.engine.layer import Shape, register_layer
from caffe_compat.engine.layers.data.base import HostDataLayer


_FILLER_TYPES = {"constant", "uniform", "gaussian", "positive_unitball", "xavier", "msra",
                 "bilinear"}


@register_layer("DummyData", origin="BVLC")
class DummyDataLayer(HostDataLayer):
    """Caffe's DummyDataLayer: tops of ``shape`` (or legacy num/channels/height/width,
    once or once per top) filled by ``data_filler`` (none = constant 0; one for all tops
    or one per top). Constant tops are filled once; the others are refilled at every
    forward (Caffe's refill rule), from ``caffe.set_random_seed``'s generator.
    """

    top_counts = (None, 1, None)

    def setup(self, bottom_shapes: Sequence[Shape]) -> None:
        from caffe_compat.engine.fillers import default_filler, fill
        self.setup_source(bottom_shapes)
        p = self.param.dummy_data_param
        tops = len(self.param.top)
        if len(p.data_filler) not in (0, 1, tops):
            raise self.error(f"number of data fillers must be 0, 1 or equal to the number "
                             f"of tops: {tops}; you specified {len(p.data_filler)} data fillers")
        legacy = bool(len(p.num) or len(p.channels) or len(p.height) or len(p.width))
        shapes = []
        if legacy:
            if len(p.shape):
                raise self.error("both shape and legacy fields were specified")
            for field in ("num", "channels", "height", "width"):
                if len(getattr(p, field)) not in (1, tops):
                    raise self.error(f"must specify '{field}' once, or once per top blob "
                                     f"({tops}); specified {len(getattr(p, field))}")
            for i in range(tops):
                shapes.append(tuple(int(v[0] if len(v) == 1 else v[i])
                                    for v in (p.num, p.channels, p.height, p.width)))
        else:
            if len(p.shape) not in (1, tops):
                raise self.error(f"must specify 'shape' once, or once per top blob ({tops}); "
                                 f"specified {len(p.shape)}")
            for i in range(tops):
                shapes.append(tuple(int(d) for d in p.shape[0 if len(p.shape) == 1 else i].dim))
        fillers = list(p.data_filler) or [default_filler(0.0)]
        for f in fillers:
            if f.type not in _FILLER_TYPES:
                raise self.error(f"unknown data_filler type {f.type!r}")
        self._fillers = [fillers[0 if len(fillers) == 1 else i] for i in range(tops)]
        self.declared_tops = shapes
        self._fill = fill
        # Caffe fills the constant tops once, in LayerSetUp; the others at each Forward.
        self._constant = [fill(f, s) if f.type == "constant" else None
                          for f, s in zip(self._fillers, shapes)]

    def next_batch(self) -> list:
        """Random tops are refilled every forward; a constant top is produced once and
        then left alone (``None``), so writes into it persist as in Caffe."""
        first = not getattr(self, "_constant_fed", False)
        self._constant_fed = True
        return [(c if first else None) if c is not None else self._fill(f, s)
                for c, f, s in zip(self._constant, self._fillers, self.declared_tops)]
