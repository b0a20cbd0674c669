"""Record real BVLC Caffe's solver steps on googlenet_tiny's TRAIN variant.

Run with the reference pycaffe (outside this repository):
    /work/caffe-ref/run tests/golden/solver_steps/make.py tests/golden/solver_steps/reference.npz
For each update rule, the golden TRAIN net and solver of tests/golden_harness.train_variant
(golden weights, golden input, label 0, Caffe's own Dropout seeded with SEED) takes STEPS
steps. ``<kind>/diff`` (STEPS x N) holds, per step, the diffs the solver's
on_gradients_ready callback sees for the PARAMS (``params``: "layer:i"), flattened and
concatenated in that order; ``<kind>/data`` (STEPS x N) their data after each step.
"""
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import golden_harness as gh  # noqa: E402
import caffe  # noqa: E402

KINDS = ["SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"]
# 5x5_reduce's bias: with this seed RMSProp's first step takes it from 0.2 to ~1e-4.
PARAMS = [("inception_3a/5x5_reduce", 0), ("inception_3a/5x5_reduce", 1), ("loss3/classifier", 1)]
SEED, STEPS = 0, 3


def record(kind: str) -> dict:
    caffe.set_mode_cpu()
    caffe.set_random_seed(SEED)
    gs = gh.load("googlenet_tiny")
    solver = caffe.get_solver(gh.train_variant("googlenet_tiny", tempfile.mkdtemp(), kind))
    net = solver.net
    net.copy_from(gs.weights)
    net.blobs["data"].data[...] = gs.npz["input/data"]
    net.blobs["label"].data[...] = 0
    diffs, datas = [], []

    def flat(field: str) -> np.ndarray:
        return np.concatenate([getattr(net.params[layer][i], field).ravel() for layer, i in PARAMS])

    solver.add_callback(lambda: None, lambda: diffs.append(flat("diff")))
    for _ in range(STEPS):
        solver.step(1)
        datas.append(flat("data"))
    return {f"{kind}/diff": np.stack(diffs), f"{kind}/data": np.stack(datas)}


if __name__ == "__main__":
    arrays = {"params": np.array([f"{layer}:{i}" for layer, i in PARAMS])}
    for kind in KINDS:
        arrays.update(record(kind))
    np.savez_compressed(sys.argv[1], **arrays)
    print("RMSProp 5x5_reduce bias after each step:", arrays["RMSProp/data"][:, 32:34])
