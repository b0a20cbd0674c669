"""FCN training as each ``<model>/solve.py`` of fcn.berkeleyvision.org runs it.

The flow (voc-fcn32s/solve.py)::

    solver = caffe.SGDSolver('solver.prototxt')
    solver.net.copy_from(weights)          # or surgery.transplant from a classifier
    surgery.interp(solver.net, [k for k in solver.net.params if 'up' in k])
    for _ in range(25):
        solver.step(4000)
        score.seg_tests(solver, False, val, layer='score')

:func:`solve` does this for any model of :data:`~.nets.MODELS`: it writes the
train/val prototxts (caffe-compat's data layers) and the model's own solver.prototxt
into a work folder, initialises the train net from a classifier of the zoo (VGG-16,
by :func:`~.surgery.transplant`: fc6/fc7 become convolutions) or from given weights,
makes the ``up*`` Deconvolutions bilinear, then alternates ``step`` and ``seg_tests``.
:func:`initialize` and :func:`train` are the two halves, usable on any FCN solver.
"""
from __future__ import annotations

import os
from typing import Callable, Optional, Sequence, Union

from caffe_compat.proto import caffe_pb2
from caffe_compat.recipes.fcn import nets, score, surgery
from caffe_compat.recipes.fcn.layers import data_layer_ids

#: solver.prototxt shared by the FCN models ("lr for unnormalized softmax", "high
#: momentum", "no gradient accumulation"; the solver never tests by itself).
BASE_SOLVER = dict(test_interval=999999999, display=20, average_loss=20, lr_policy="fixed",
                   momentum=0.99, iter_size=1, max_iter=100000, weight_decay=0.0005,
                   snapshot=4000, test_initialization=False)

#: Each model's own settings (its solver.prototxt).
SOLVER_SETTINGS: dict[str, dict] = {
    "voc-fcn32s": dict(base_lr=1e-10, test_iter=736),
    "voc-fcn16s": dict(base_lr=1e-12, test_iter=736),
    "voc-fcn8s": dict(base_lr=1e-14, test_iter=736),
    "voc-fcn8s-atonce": dict(base_lr=1e-10, test_iter=736, max_iter=300000),
    # "lr for normalized softmax", "standard momentum", "gradient accumulation"
    "voc-fcn-alexnet": dict(base_lr=1e-4, momentum=0.9, iter_size=20, test_iter=736),
    "pascalcontext-fcn32s": dict(base_lr=1e-10, test_iter=5105, max_iter=300000),
    "pascalcontext-fcn16s": dict(base_lr=1e-12, test_iter=5105, max_iter=300000),
    "pascalcontext-fcn8s": dict(base_lr=1e-14, test_iter=5105, max_iter=300000),
    "nyud-fcn32s-color": dict(base_lr=1e-10, test_iter=654, max_iter=300000, snapshot=2000),
    "nyud-fcn32s-hha": dict(base_lr=1e-10, test_iter=654, max_iter=300000, snapshot=2000),
    "nyud-fcn32s-color-d": dict(base_lr=1e-10, test_iter=654, max_iter=300000, snapshot=2000),
    "nyud-fcn32s-color-hha": dict(base_lr=1e-12, test_iter=654, max_iter=300000, snapshot=2000),
    "siftflow-fcn32s": dict(base_lr=1e-10, test_iter=1111, max_iter=300000),
    "siftflow-fcn16s": dict(base_lr=1e-12, test_iter=1111, max_iter=300000),
    "siftflow-fcn8s": dict(base_lr=1e-14, test_iter=1111, max_iter=300000),
    # from scratch on synthetic scenes (caffe_compat.recipes.shapes): normalised loss, Adam
    "shapes-fcn8s": dict(type="Adam", base_lr=1e-3, momentum=0.9, momentum2=0.999,
                         lr_policy="step", gamma=0.1, stepsize=3000, test_iter=40,
                         max_iter=4000, snapshot=1000),
}

#: solve.py's rounds: ``solver.step(4000)`` then score (2000 for NYUDv2 and SIFT Flow).
TEST_INTERVAL = {name: (2000 if name.startswith(("nyud", "siftflow")) else 4000)
                 for name in SOLVER_SETTINGS}
TEST_INTERVAL["shapes-fcn8s"] = 1000


def solver_param(model: str, train_net: str = "train.prototxt", test_net: str = "val.prototxt",
                 snapshot_prefix: str = "snapshot/train") -> caffe_pb2.SolverParameter:
    """``model``'s solver.prototxt as a SolverParameter (SGD unless its settings name a
    ``type``: shapes-fcn8s trains from scratch with Adam)."""
    if model not in SOLVER_SETTINGS:
        raise ValueError(f"unknown FCN model {model!r}; known: {', '.join(SOLVER_SETTINGS)}")
    settings = dict(BASE_SOLVER, **SOLVER_SETTINGS[model])
    p = caffe_pb2.SolverParameter()
    p.train_net = train_net
    p.test_net.append(test_net)
    p.test_iter.append(settings.pop("test_iter"))
    for key, value in settings.items():
        setattr(p, key, value)
    p.snapshot_prefix = snapshot_prefix
    return p


Init = Union[str, object, None]


def initialize(net, init: Init = "vgg16", weights: Optional[str] = None,
               log: Optional[Callable[[str], None]] = print) -> None:
    """Initialise a FCN train net as solve.py does, then make its ``up*`` layers bilinear.

    ``weights``: a .caffemodel copied by layer name (``solver.net.copy_from``, e.g. the
    previous stage's FCN-32s for FCN-16s). Otherwise ``init`` is a classifier to
    :func:`~.surgery.transplant` from: a zoo model name (``"vgg16"``, downloaded on
    first use; DownloadError when offline) or a loaded pycaffe-style net.
    """
    if weights:
        net.copy_from(weights)
    elif isinstance(init, str):
        from caffe_compat import zoo
        classifier = zoo.load_pycaffe(init)
        surgery.transplant(net, classifier, log=log)
        del classifier
    elif init is not None:
        surgery.transplant(net, init, log=log)
    surgery.interp(net, surgery.interp_layers(net))


def train(solver, val: Sequence[str], iters: int, test_interval: int = 4000,
          scores: Sequence[tuple] = (("score", "label"),), save_format: Optional[str] = None,
          log: Optional[Callable[[str], None]] = print) -> list:
    """solve.py's loop: ``solver.step(test_interval)`` then ``score.seg_tests`` for each
    (score blob, label blob) pair, until ``iters`` iterations are done (the last round
    may be shorter). Returns the histograms of every round, in order."""
    hists = []
    remaining = int(iters)
    while remaining > 0:
        n = min(int(test_interval), remaining)
        solver.step(n)
        remaining -= n
        for layer, gt in scores:
            hists.append(score.seg_tests(solver, save_format, val, layer=layer, gt=gt, log=log))
    return hists


def absolute_dirs(dataset_dirs: dict) -> dict:
    """Dataset folders as absolute paths (the data layers open them from any cwd)."""
    return {k: os.path.abspath(v) if isinstance(v, str) else v for k, v in dataset_dirs.items()}


def prepare(model: str, work_dir: str, snapshot_dir: Optional[str] = None,
            splits: Optional[Sequence[str]] = None, **dataset_dirs) -> str:
    """Write ``model``'s train/val prototxts (data layers from caffe-compat, dataset
    folders made absolute; ``splits`` overrides the (train, val) split names) and its
    solver.prototxt into ``work_dir``; returns the solver path."""
    train_path, val_path = nets.make_net(model, work_dir, splits, module=nets.LAYERS_MODULE,
                                         **absolute_dirs(dataset_dirs))
    snapshot_dir = os.path.abspath(snapshot_dir or os.path.join(work_dir, "snapshot"))
    param = solver_param(model, os.path.basename(train_path), os.path.basename(val_path),
                         os.path.join(snapshot_dir, "train"))
    path = os.path.join(work_dir, "solver.prototxt")
    with open(path, "w") as f:
        f.write(str(param))
    return path


def solve(model: str, work_dir: str, *, iters: int, test_interval: Optional[int] = None,
          init: Init = "vgg16", weights: Optional[str] = None,
          snapshot_dir: Optional[str] = None, splits: Optional[Sequence[str]] = None,
          save_format: Optional[str] = None, snapshot: bool = True,
          log: Optional[Callable[[str], None]] = print, **dataset_dirs):
    """Train ``model`` for ``iters`` iterations as its solve.py does; returns the solver.

    ``dataset_dirs``: the builder's folders (``voc_dir``, ``sbdd_dir``; ``context_dir``;
    ``nyud_dir``; ``siftflow_dir``; ``sbdd_dir=None`` trains VOC models on VOC's own
    ``train`` split); ``splits`` overrides the model's (train, val) splits. Nets run on the device chosen by ``caffe_compat.set_mode_*``.
    The final weights are snapshotted (``<snapshot_dir>/train_iter_N.caffemodel``).
    """
    from caffe_compat.solvers import get_solver
    spec = nets.get_model(model)
    if isinstance(init, str) and not weights:   # fail early (and in one line) when offline
        from caffe_compat import zoo
        zoo.fetch(init)
    splits = tuple(splits or spec.splits)
    solver = get_solver(prepare(model, work_dir, snapshot_dir, splits, **dataset_dirs))
    initialize(solver.net, init, weights, log=log)
    val_net = nets.build(model, splits[1], module=nets.LAYERS_MODULE,
                         **absolute_dirs(dataset_dirs))
    val = data_layer_ids(val_net.layer[0])
    train(solver, val, iters, test_interval or TEST_INTERVAL[model], spec.scores, save_format,
          log=log)
    if snapshot:
        solver.snapshot()
    return solver
