"""Benchmark: loading a VGG-16-sized .caffemodel (138 M floats, ~553 MB) three ways.

Writes random VGG-16 weights with ``write_caffemodel`` (plus the matching deploy
prototxt) into a temporary directory, then loads the file, each method in its own
subprocess so that peak memory is per method:

* ``caffe_compat``: :func:`caffe_compat.formats.caffemodel.read_caffemodel`;
* ``protobuf``: ``caffe_pb2.NetParameter().ParseFromString`` + ``np.array(blob.data)``
  per blob, as other converters do;
* ``cv2.dnn``: ``cv2.dnn.readNetFromCaffe(prototxt, caffemodel)`` (OpenCV's C++ loader).

Each child loads twice: the first load (fresh process) gives the time and the peak
memory; the second, in the same process, reuses the memory the first freed, so its
time shows the method without first-touch page faults (on VMs that hand freed guest
memory back to the host these can cost ~2 s per GB and dominate the first load).

Each method runs ``REPEATS`` times in fresh processes on a warm page cache; the best
(wall and CPU) times and the highest peak are reported. Peak RSS is the child's
``VmHWM``, reset after the imports through ``/proc/self/clear_refs`` so that it covers
the load alone; it is shown with the RSS before the load and the growth relative to
the file size. Targets: caffe_compat >= 10x faster than protobuf, and the memory its
load adds <= 1.3x the file size. The temporary directory is deleted at the end.

Run::

    .venv/bin/python benchmarks/load_caffemodel.py
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# VGG-16 (VGG_ILSVRC_16_layers): (name, num_output, fan-in shape of the weight).
VGG16 = [
    ("conv1_1", 64, (3, 3, 3)), ("conv1_2", 64, (64, 3, 3)),
    ("conv2_1", 128, (64, 3, 3)), ("conv2_2", 128, (128, 3, 3)),
    ("conv3_1", 256, (128, 3, 3)), ("conv3_2", 256, (256, 3, 3)), ("conv3_3", 256, (256, 3, 3)),
    ("conv4_1", 512, (256, 3, 3)), ("conv4_2", 512, (512, 3, 3)), ("conv4_3", 512, (512, 3, 3)),
    ("conv5_1", 512, (512, 3, 3)), ("conv5_2", 512, (512, 3, 3)), ("conv5_3", 512, (512, 3, 3)),
    ("fc6", 4096, (25088,)), ("fc7", 4096, (4096,)), ("fc8", 1000, (4096,)),
]
REPEATS = 5  # each method runs this many times (fresh process each); best time, worst peak
POOL_AFTER = {"conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"}


def vgg16_prototxt() -> str:
    """The VGG-16 deploy net (Input 1x3x224x224, ReLU after each conv/fc6/fc7, Softmax)."""
    lines = ['name: "VGG_ILSVRC_16_layers"',
             'layer { name: "data" type: "Input" top: "data" '
             'input_param { shape { dim: 1 dim: 3 dim: 224 dim: 224 } } }']
    bottom = "data"
    for name, num_output, _ in VGG16:
        suffix = name[len("conv"):] if name.startswith("conv") else name[len("fc"):]
        if name.startswith("conv"):
            lines.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" '
                         f'top: "{name}" convolution_param {{ num_output: {num_output} '
                         f'pad: 1 kernel_size: 3 }} }}')
        else:
            lines.append(f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" '
                         f'top: "{name}" '
                         f'inner_product_param {{ num_output: {num_output} }} }}')
        bottom = name
        if name != "fc8":
            lines.append(f'layer {{ name: "relu{suffix}" type: "ReLU" bottom: "{name}" '
                         f'top: "{name}" }}')
        if name in POOL_AFTER:
            pool = "pool" + name[4]
            lines.append(f'layer {{ name: "{pool}" type: "Pooling" bottom: "{name}" top: "{pool}" '
                         f'pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}')
            bottom = pool
        if name in ("fc6", "fc7"):
            drop = "drop" + name[2:]
            lines.append(f'layer {{ name: "{drop}" type: "Dropout" bottom: "{name}" '
                         f'top: "{name}" dropout_param {{ dropout_ratio: 0.5 }} }}')
    lines.append('layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }')
    return "\n".join(lines) + "\n"


def write_vgg16(directory: str):
    """Write the prototxt and random weights; returns (prototxt, caffemodel, seconds to write)."""
    import numpy as np
    from google.protobuf import text_format

    from caffe_compat.formats.caffemodel import LayerWeights, write_caffemodel
    from caffe_compat.proto import caffe_pb2

    prototxt = os.path.join(directory, "VGG_ILSVRC_16_layers_deploy.prototxt")
    caffemodel = os.path.join(directory, "VGG_ILSVRC_16_layers.caffemodel")
    text = vgg16_prototxt()
    with open(prototxt, "w") as f:
        f.write(text)
    net = text_format.Parse(text, caffe_pb2.NetParameter())
    rng = np.random.default_rng(0)
    layers = [LayerWeights(name, "", [rng.standard_normal((n,) + fan_in, dtype=np.float32),
                                      rng.standard_normal((n,), dtype=np.float32)])
              for name, n, fan_in in VGG16]
    start = time.perf_counter()
    write_caffemodel(caffemodel, layers, net_param=net)
    seconds = time.perf_counter() - start
    return prototxt, caffemodel, seconds, sum(b.size for layer in layers for b in layer.blobs)


# --------------------------------------------------------------------------- child side

def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child(method: str, prototxt: str, caffemodel: str) -> None:
    import numpy as np  # noqa: F401  (imports happen before the baseline)
    if method == "caffe_compat":
        from caffe_compat.formats.caffemodel import read_caffemodel

        def load():
            model = read_caffemodel(caffemodel)
            return sum(b.size for layer in model.layers for b in layer.blobs)
    elif method == "protobuf":
        from caffe_compat.proto import caffe_pb2

        def load():
            net = caffe_pb2.NetParameter()
            with open(caffemodel, "rb") as f:
                net.ParseFromString(f.read())
            arrays = [np.array(blob.data, dtype=np.float32).reshape(tuple(blob.shape.dim))
                      for layer in net.layer for blob in layer.blobs]
            return sum(a.size for a in arrays)
    elif method == "cv2.dnn":
        import cv2

        def load():
            net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
            return len(net.getLayerNames())
    else:
        raise SystemExit(f"unknown method {method}")
    baseline = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:   # reset VmHWM to the current RSS
        f.write("5")
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    result = load()
    seconds, cpu_seconds = time.perf_counter() - start, _cpu_seconds() - cpu_start
    peak = _rss_kib("VmHWM")
    # Load again in the same process: the memory freed by the first load is reused,
    # so this time leaves out first-touch page faults (costly on some VMs).
    start = time.perf_counter()
    load()
    warm_seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds,
                      "warm_seconds": warm_seconds,
                      "baseline_kib": baseline, "peak_kib": peak, "result": result}))


def _measure(method: str, prototxt: str, caffemodel: str) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", method,
                          prototxt, caffemodel], check=True, capture_output=True, text=True,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(*sys.argv[2:])
        return 0
    sys.path.insert(0, ROOT)
    directory = tempfile.mkdtemp(prefix="vgg16_bench_")
    try:
        prototxt, caffemodel, write_seconds, n_params = write_vgg16(directory)
        size = os.path.getsize(caffemodel)
        mib = 1024 * 1024
        print(f"VGG-16 caffemodel: {n_params:,} float parameters, {size / mib:.1f} MiB; "
              f"write_caffemodel took {write_seconds:.2f} s "
              f"({size / mib / write_seconds:.0f} MiB/s)")
        # Settle the fresh file on disk and warm the page cache, so no method pays
        # for write-back or disk reads the others do not.
        with open(caffemodel, "rb") as f:
            os.fsync(f.fileno())
            while f.read(1 << 24):
                pass
        results = {}
        for method in ("caffe_compat", "protobuf", "cv2.dnn"):
            runs = [_measure(method, prototxt, caffemodel) for _ in range(REPEATS)]
            r = results[method] = {
                "seconds": min(run["seconds"] for run in runs),
                "cpu_seconds": min(run["cpu_seconds"] for run in runs),
                "warm_seconds": min(run["warm_seconds"] for run in runs),
                "peak_kib": max(run["peak_kib"] for run in runs),
                "baseline_kib": min(run["baseline_kib"] for run in runs),
                "result": runs[0]["result"]}
            growth = (r["peak_kib"] - r["baseline_kib"]) * 1024
            peak = r["peak_kib"] * 1024
            print(f"{method:>13}: {r['seconds']:5.2f} s (CPU {r['cpu_seconds']:5.2f} s; again "
                  f"in-process {r['warm_seconds']:5.2f} s)"
                  f"   peak RSS {peak / mib:7.1f} MiB "
                  f"(before load {r['baseline_kib'] * 1024 / mib:6.1f} MiB; load added "
                  f"{growth / mib:7.1f} MiB = {growth / size:.2f}x file; "
                  f"peak = {peak / size:.2f}x file)")
        ours = results["caffe_compat"]
        for other in ("protobuf", "cv2.dnn"):
            print(f"caffe_compat vs {other}: {results[other]['seconds'] / ours['seconds']:.1f}x "
                  f"faster in a fresh process, "
                  f"{results[other]['warm_seconds'] / ours['warm_seconds']:.1f}x loading again")
        growth_ratio = (ours["peak_kib"] - ours["baseline_kib"]) * 1024 / size
        cold = results["protobuf"]["seconds"] / ours["seconds"]
        warm = results["protobuf"]["warm_seconds"] / ours["warm_seconds"]
        verdict = {True: "met", False: "NOT met"}
        cpu = results["protobuf"]["cpu_seconds"] / ours["cpu_seconds"]
        print(f"target >= 10x faster than protobuf: {verdict[cold >= 10]} in a fresh process "
              f"({cold:.1f}x wall, {cpu:.1f}x CPU), {verdict[warm >= 10]} loading again "
              f"({warm:.1f}x)")
        print(f"target memory added by the load <= 1.3x file: {verdict[growth_ratio <= 1.3]} "
              f"({growth_ratio:.2f}x; the {ours['baseline_kib'] / 1024:.0f} MiB before the load "
              f"are the interpreter and imports)")
        ok = max(cold, warm) >= 10 and growth_ratio <= 1.3
        assert results["caffe_compat"]["result"] == results["protobuf"]["result"] == n_params
        return 0 if ok else 1
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
