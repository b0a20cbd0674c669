"""py-faster-rcnn's ``fast_rcnn/nms_wrapper.py``: one NMS for CPU and "GPU" callers.

>>> import numpy as np
>>> nms(np.array([[0, 0, 9, 9, .9], [1, 1, 9, 9, .8], [20, 20, 29, 29, .7]], np.float32), 0.5)
[0, 2]
"""
from __future__ import annotations

import numpy as np

from caffe_compat.engine.layers import rcnn


def nms(dets: np.ndarray, thresh: float, force_cpu: bool = False) -> list[int]:
    """Greedy NMS of ``[x1, y1, x2, y2, score]`` rows (py_cpu_nms's numbers; the CUDA
    kernel py-faster-rcnn uses on GPU keeps the same boxes). ``force_cpu`` is accepted
    for compatibility."""
    if dets.shape[0] == 0:
        return []
    return rcnn.nms(dets, thresh)


__all__ = ["nms"]
