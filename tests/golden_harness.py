"""Reading the real-Caffe golden sets copied into tests/golden/ (see its README.md).

Each set: ``net.prototxt``, ``weights.caffemodel`` and ``golden.npz`` with
``input/<blob>``, ``topdiff/<blob>``, ``data/<blob>``, ``diff/<blob>``,
``param/<layer>/<i>``, ``param_diff/<layer>/<i>``, ``top/<layer>/<j>``,
``top_diff/<layer>/<j>`` and ``meta`` (JSON, layers in Caffe's order incl. Splits).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
SETS = ["layers_basic", "layers_more", "fcn_tiny", "googlenet_tiny", "resnet_tiny", "caffenet_tiny"]

FORWARD_TOL = 1e-5
BACKWARD_TOL = 1e-4


def rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    """||ours - ref|| / ||ref|| (absolute L2 error when the reference is all zeros)."""
    ours = np.asarray(ours, dtype=np.float64).reshape(np.shape(ref))
    ref = np.asarray(ref, dtype=np.float64)
    num = np.linalg.norm(ours - ref)
    den = np.linalg.norm(ref)
    return float(num / den) if den > 0 else float(num)


@dataclass
class LayerCase:
    """One layer as Caffe ran it: its inputs, outputs and gradients."""
    name: str
    type: str
    bottoms: list
    tops: list
    bottom_data: list
    top_data: list
    top_diff: list
    bottom_diff: list          # None where Caffe computed no gradient
    params: list
    param_diffs: list
    backward_skipped: bool


@dataclass
class GoldenSet:
    name: str
    dir: str
    npz: dict
    meta: dict
    layers: list = field(default_factory=list)

    @property
    def prototxt(self) -> str:
        return os.path.join(self.dir, "net.prototxt")

    @property
    def weights(self) -> str:
        return os.path.join(self.dir, "weights.caffemodel")

    def layer_cases(self) -> list[LayerCase]:
        """Every layer with Caffe's own bottom data / top diff (for layer-by-layer tests)."""
        z, meta = self.npz, self.meta
        skipped = set(meta.get("backward_skipped_layers", []))
        value = {}        # blob -> current data value while walking forward
        grad_key = {}     # blob -> npz key of the gradient w.r.t. its current value
        for b in meta["inputs"]:
            value[b] = z[f"input/{b}"]
            grad_key[b] = f"diff/{b}"
        cases = []
        for L in meta["layers"]:
            name, tops, bottoms = L["name"], L["tops"], L["bottoms"]
            bottom_data = [value[b] for b in bottoms]
            bottom_grad_keys = [grad_key.get(b) for b in bottoms]
            top_data, top_diff = [], []
            for j, t in enumerate(tops):
                tk = f"top/{name}/{j}"
                top_data.append(z[tk] if tk in z else z[f"data/{t}"])
                dk = f"top_diff/{name}/{j}"
                top_diff.append(z[dk] if dk in z else z.get(f"diff/{t}"))
            bottom_diff = [z[k] if k is not None and k in z else None for k in bottom_grad_keys]
            params, pdiffs, i = [], [], 0
            while f"param/{name}/{i}" in z:
                params.append(z[f"param/{name}/{i}"])
                pdiffs.append(z.get(f"param_diff/{name}/{i}"))
                i += 1
            cases.append(LayerCase(name, L["type"], bottoms, tops, bottom_data, top_data,
                                   top_diff, bottom_diff, params, pdiffs, name in skipped))
            for j, t in enumerate(tops):
                value[t] = top_data[j]
                dk = f"top_diff/{name}/{j}"
                grad_key[t] = dk if dk in z else f"diff/{t}"
        return cases


def load(name: str) -> GoldenSet:
    d = os.path.join(GOLDEN_DIR, name)
    with np.load(os.path.join(d, "golden.npz")) as f:
        npz = {k: f[k] for k in f.files}
    meta = json.loads(str(npz["meta"]))
    return GoldenSet(name, d, npz, meta, meta["layers"])


def layer_params_by_name(prototxt_path: str) -> dict:
    """LayerParameter per layer name from a V2 golden prototxt (plain text_format)."""
    from google.protobuf import text_format
    from caffe_compat.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    with open(prototxt_path) as f:
        text_format.Merge(f.read(), net)
    return {lp.name: lp for lp in net.layer}


def train_solver_params(kind: str) -> dict:
    """The golden TRAIN variants' solver settings for one update rule (lr_policy fixed;
    base_lr 1 for AdaDelta, momentum 0 for AdaGrad/RMSProp), shared by
    tests/test_solvers.py and the real-Caffe generator of tests/golden/solver_steps."""
    return dict(base_lr=1.0 if kind == "AdaDelta" else 0.01,
                momentum=0.0 if kind in ("AdaGrad", "RMSProp") else 0.9, momentum2=0.999,
                delta=1e-6, rms_decay=0.99, weight_decay=0.01, regularization_type="L2")


def train_variant(name: str, out_dir: str, kind: str) -> str:
    """A golden net (real Caffe's structure and weights) turned into a TRAIN net (a label
    input and SoftmaxWithLoss on its classifier scores, the blob before 'prob'), written
    with a ``kind`` solver (train_solver_params) into out_dir; returns the solver's path.

    >>> solver = caffe.get_solver(train_variant("googlenet_tiny", str(tmp_path), "RMSProp"))  # doctest: +SKIP
    """
    gs = load(name)
    text = open(gs.prototxt).read()
    prob = [l for l in gs.meta["layers"] if l["tops"] == ["prob"]][0]
    n = gs.npz["input/data"].shape[0]
    text += ('\nlayer { name: "label" type: "Input" top: "label" input_param { shape { dim: %d } } }\n'
             'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "%s" bottom: "label" top: "loss" }\n'
             % (n, prob["bottoms"][0]))
    net_path = os.path.join(out_dir, "train.prototxt")
    with open(net_path, "w") as f:
        f.write(text)
    p = train_solver_params(kind)
    solver_path = os.path.join(out_dir, "solver.prototxt")
    with open(solver_path, "w") as f:
        f.write(f'net: "{net_path}"\ntype: "{kind}"\nbase_lr: {p["base_lr"]}\n'
                f'momentum: {p["momentum"]}\nmomentum2: {p["momentum2"]}\ndelta: {p["delta"]}\n'
                f'rms_decay: {p["rms_decay"]}\nweight_decay: {p["weight_decay"]}\n'
                f'lr_policy: "fixed"\nmax_iter: 10\ndisplay: 0\n'
                f'snapshot_prefix: "{os.path.join(out_dir, "s")}"\n')
    return solver_path
