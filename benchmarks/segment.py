"""Benchmark: seconds per 500x375 image through voc-fcn8s on the CPU, caffe-compat vs
OpenCV's dnn module, side by side in one run.

The zoo's ``prototxt/voc-fcn8s/deploy.prototxt`` gets random weights (He-scaled
Gaussians, bilinear upscore kernels) written with ``write_caffemodel`` into a
temporary folder; both frameworks load that same prototxt and caffemodel and run the
same preprocessed 1x3x375x500 blob (a 500 wide, 375 high image, VOC's usual size):

* ``caffe-compat``: the engine's block hybridized (``Segmenter``: static memory, the
  score blob copied back to numpy);
* ``cv2.dnn``: ``cv2.dnn.readNetFromCaffe`` + ``setInput`` + ``forward("score")``.

Each runs one warm-up forward, then ``REPEATS`` timed forwards; the median is
reported, with the relative difference of the two score blobs as a sanity check.
The end-to-end ``Segmenter.segment`` (preprocessing + net + argmax) is timed too.

Run::

    .venv/bin/python benchmarks/segment.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTOTXT = os.path.join(ROOT, "prototxt", "voc-fcn8s", "deploy.prototxt")
HEIGHT, WIDTH = 375, 500


def random_weights(prototxt: str, seed: int = 0) -> list:
    """LayerWeights for every learnable layer of the net (shapes from the prototxt)."""
    from caffe_compat.formats.caffemodel import LayerWeights
    from caffe_compat.recipes.fcn.nets import infer_shapes, read_net_param
    from caffe_compat.recipes.fcn.surgery import upsample_filt
    param = read_net_param(prototxt)
    shapes = infer_shapes(param, {"data": (1, 3, HEIGHT, WIDTH)})
    rng = np.random.default_rng(seed)
    out = []
    for layer in param.layer:
        if layer.type not in ("Convolution", "Deconvolution"):
            continue
        cp = layer.convolution_param
        channels = shapes[layer.bottom[0]][1]
        k = int(cp.kernel_size[0])
        if layer.type == "Deconvolution":   # FCN's fixed bilinear upsampling
            w = np.zeros((channels, cp.num_output, k, k), np.float32)
            w[range(channels), range(cp.num_output)] = upsample_filt(k)
            out.append(LayerWeights(layer.name, layer.type, [w]))
            continue
        fan_in = channels * k * k
        w = (rng.standard_normal((cp.num_output, channels, k, k)) * np.sqrt(2.0 / fan_in))
        b = rng.standard_normal(cp.num_output) * 0.1
        out.append(LayerWeights(layer.name, layer.type, [w.astype(np.float32),
                                                         b.astype(np.float32)]))
    return out


def timed(fn, repeats: int) -> tuple[float, object]:
    result = fn()                      # warm-up (graph build, allocation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import cv2
    import mxnet as mx
    from caffe_compat.formats.caffemodel import write_caffemodel
    from caffe_compat.recipes.fcn.infer import Segmenter, preprocess

    image = np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    blob = preprocess(image)[np.newaxis]
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "voc-fcn8s-random.caffemodel")
        write_caffemodel(weights, random_weights(PROTOTXT))

        seg = Segmenter.from_files(PROTOTXT, weights, ctx=mx.cpu())
        x = mx.nd.array(blob, ctx=mx.cpu())
        ours_t, ours = timed(lambda: seg.net(x).asnumpy(), args.repeats)
        e2e_t, _ = timed(lambda: seg.segment(image), args.repeats)

        cv = cv2.dnn.readNetFromCaffe(PROTOTXT, weights)
        cv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        cv.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)

        def cv_forward():
            cv.setInput(blob, "data")
            return cv.forward("score")
        cv_t, theirs = timed(cv_forward, args.repeats)

    rel = float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))
    print(f"voc-fcn8s deploy, 1x3x{HEIGHT}x{WIDTH} ({WIDTH}x{HEIGHT} image), CPU, "
          f"median of {args.repeats} runs after a warm-up")
    print(f"  caffe-compat (hybridized block)   {ours_t:8.3f} s/image")
    print(f"  caffe-compat Segmenter.segment    {e2e_t:8.3f} s/image (preprocess + argmax)")
    print(f"  cv2.dnn {cv2.__version__:<10}                {cv_t:8.3f} s/image")
    print(f"  ratio caffe-compat / cv2.dnn      {ours_t / cv_t:8.2f}x "
          f"({'faster' if ours_t < cv_t else 'slower'})")
    print(f"  score blobs agree: rel. L2 difference {rel:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
