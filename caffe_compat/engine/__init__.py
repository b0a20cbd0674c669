"""The engine: Caffe layers as Gluon HybridBlocks, and the graph that runs them.

Data path: ``NetParameter`` (caffe_compat.formats) -> :mod:`.graph` (Caffe's
FilterNet/InsertSplits view of the net) -> :mod:`.network` (a ``HybridBlock`` running
:mod:`.layers` in prototxt order).
"""
