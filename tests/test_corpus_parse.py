"""Every real prototxt parses; legacy copies upgrade to their current-format twins.

Runs over ``../shared/corpus`` (public Caffe files; absent in a user's clone, then
those tests skip) and always over the golden nets and ``tests/data/prototxt``.
Files whose name contains "solver" are read as SolverParameter, all others as
NetParameter (parsed and upgraded). Fork fields only warn (non-strict), as they
must for real files.
"""
import difflib
import glob
import os
import warnings

import pytest

from caffe_compat.errors import SolverError
from caffe_compat.formats.prototxt import format_text, read_label_map, read_net
from caffe_compat.formats.solver_files import read_solver

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
CORPUS = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "corpus"))
LOCAL_FILES = sorted(glob.glob(os.path.join(HERE, "golden", "*", "net.prototxt"))
                     + glob.glob(os.path.join(HERE, "data", "prototxt", "*.prototxt")))
# Legacy-format copies and the current-format file they must upgrade to.
CORPUS_LEGACY_DIRS = ("bvlc_caffe_v0_format", "bvlc_caffe_v1_format")
CORPUS_CURRENT_DIR = "bvlc_caffe"
LOCAL_PAIRS = [("v0_deploy", "v2_deploy"), ("v1_deploy", "v2_deploy"),
               ("v0_train", "v2_train"), ("v1_train_val", "v2_train_val")]


def is_solver(path):
    return "solver" in os.path.basename(path).lower()


def is_label_map(path):
    """SSD label maps (``labelmap_voc.prototxt``): top-level ``item { }`` entries."""
    return "labelmap" in os.path.basename(path).lower()


def read_any(path):
    """Reads one file as Caffe would; returns (kind, message, warning texts)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if is_solver(path):
            kind, message = "solver", read_solver(path)
        elif is_label_map(path):
            kind, message = "label map", read_label_map(path)
        else:
            kind, message = "net", read_net(path).param
    return kind, message, [str(w.message) for w in caught
                           if not issubclass(w.category, DeprecationWarning)]


def corpus_files():
    if not os.path.isdir(CORPUS):
        return []
    return sorted(glob.glob(os.path.join(CORPUS, "**", "*.prototxt"), recursive=True)
                  + glob.glob(os.path.join(CORPUS, "**", "*.pt"), recursive=True))


def assert_same_net(legacy_path, current_path):
    legacy, current = read_any(legacy_path)[1], read_any(current_path)[1]
    if legacy != current:
        diff = "".join(difflib.unified_diff(
            format_text(current).splitlines(True), format_text(legacy).splitlines(True),
            fromfile=current_path, tofile=legacy_path + " (upgraded)"))
        pytest.fail(f"{legacy_path} does not upgrade to {current_path}:\n{diff}")


# ---------------------------------------------------------------------------
# Local files (always present)
# ---------------------------------------------------------------------------

def test_local_files_are_found():
    assert len(LOCAL_FILES) >= 6 + 13


@pytest.mark.parametrize("path", LOCAL_FILES, ids=lambda p: os.path.relpath(p, HERE))
def test_local_file_parses(path):
    kind, message, _ = read_any(path)
    if kind == "net":
        assert len(message.layer) > 0 and not message.layers and not message.input
        assert all(layer.type for layer in message.layer)
    else:
        assert message.net or message.train_net or message.net_param.layer


@pytest.mark.parametrize("legacy, current", LOCAL_PAIRS)
def test_local_legacy_copies_upgrade_to_current(legacy, current):
    data = os.path.join(HERE, "data", "prototxt")
    assert_same_net(os.path.join(data, legacy + ".prototxt"),
                    os.path.join(data, current + ".prototxt"))


# ---------------------------------------------------------------------------
# The shared corpus (when present)
# ---------------------------------------------------------------------------

#: The only warnings the corpus may still raise, each with why it is right to warn: the
#: value belongs to no schema caffe-compat can honour, and what it names is refused
#: with a clear error when the net is built.
EXPECTED_WARNINGS = {
    'unknown field "stepearly" in caffe.SolverParameter':
        "lenet_stepearly_solver.prototxt of BVLC's V1-era tree: no Caffe schema ever had "
        "this field (BVLC removed the 'bogus stepearly' example in d3025f5f); real Caffe "
        "refuses the file",
}

#: Files that parse but that caffe-compat refuses to run, as real Caffe does.
EXPECTED_REFUSALS = {
    "lenet_stepearly_solver.prototxt": 'unknown lr_policy "stepearly"',
}


def test_corpus_files_parse():
    files = corpus_files()
    if not files:
        pytest.skip(f"corpus not present at {CORPUS}")
    counts = {"net": 0, "solver": 0, "label map": 0}
    failures, warned, unexpected = [], 0, []
    for path in files:
        try:
            kind, _, notes = read_any(path)
        except Exception as exc:       # collect every failure, report them together
            refusal = EXPECTED_REFUSALS.get(os.path.basename(path))
            if refusal and isinstance(exc, SolverError) and refusal in str(exc):
                counts["solver"] += 1
                continue
            failures.append(f"{os.path.relpath(path, CORPUS)}: {type(exc).__name__}: {exc}")
            continue
        counts[kind] += 1
        warned += bool(notes)
        unexpected += [n for n in notes if not any(e in n for e in EXPECTED_WARNINGS)]
    print(f"corpus: {counts['net']} nets, {counts['solver']} solvers and "
          f"{counts['label map']} label maps parsed "
          f"({warned} with warnings) of {len(files)} files")
    assert not failures, f"{len(failures)} of {len(files)} files failed:\n" + "\n".join(failures)
    assert not unexpected, "fork fields to implement or document:\n" + "\n".join(unexpected)
    assert counts["net"] > 0 and counts["solver"] > 0


def corpus_pairs():
    pairs = []
    for legacy_dir in CORPUS_LEGACY_DIRS:
        root = os.path.join(CORPUS, legacy_dir)
        for path in sorted(glob.glob(os.path.join(root, "**", "*.prototxt"), recursive=True)):
            if is_solver(path):
                continue
            twin = os.path.join(CORPUS, CORPUS_CURRENT_DIR, os.path.relpath(path, root))
            if os.path.isfile(twin):
                pairs.append((path, twin))
    return pairs


# ---- what upstream changed by hand in the V2 twins, file by file ----------------------
def _input_layer_name(net):
    """Caffe's UpgradeNetInput names the new layer "input"; BVLC's hand-converted V2 files
    (e6c80dac) named it after its top ("data")."""
    for layer in net.layer:
        if layer.type == "Input":
            layer.name = ""


def _fillers(net):
    """Upstream retuned weight/bias fillers in the V2 files (initial values only)."""
    for layer in net.layer:
        for field in ("convolution_param", "inner_product_param"):
            if layer.HasField(field):
                getattr(layer, field).ClearField("weight_filler")
                getattr(layer, field).ClearField("bias_filler")


def _lrn_region(net):
    """cifar10_full's V2 twin dropped norm_region: WITHIN_CHANNEL (upstream commit
    e6c80dac; the V0/V1 nets normalise within channel, the V2 one across channels)."""
    for layer in net.layer:
        if layer.type == "LRN":
            layer.lrn_param.ClearField("norm_region")


def _caffe_dir_paths(net):
    """feature_extraction/imagenet_val: the legacy file spelled paths with $CAFFE_DIR."""
    for layer in net.layer:
        for field in ("image_data_param", "transform_param"):
            sub = getattr(layer, field)
            for name in ("source", "mean_file"):
                if sub.DESCRIPTOR.fields_by_name.get(name) and sub.HasField(name):
                    setattr(sub, name, getattr(sub, name).replace("$CAFFE_DIR/", ""))


def _drop_loss_layers(net):
    """feature_extraction/imagenet_val: the V2 twin has no SoftmaxWithLoss (it only
    extracts features)."""
    keep = [l for l in net.layer if l.type != "SoftmaxWithLoss"]
    del net.layer[:]
    net.layer.extend(keep)


def _googlenet_loss2_top(net):
    """bvlc_googlenet train_val: the V1 file named loss2's top "loss2/loss1" (a typo fixed
    to "loss2/loss2" in the V2 file)."""
    for layer in net.layer:
        for i, top in enumerate(layer.top):
            if top == "loss2/loss1" and layer.name == "loss2/loss":
                layer.top[i] = "loss2/loss2"


def _flickr_loss_layer(net):
    """finetune_flickr_style train_val: the V1 loss layer has no top (Caffe gives it an
    anonymous one) and comes before accuracy; the V2 twin names its top "loss" and moved
    it after accuracy."""
    layers = sorted(net.layer, key=lambda l: (l.type in ("SoftmaxWithLoss", "Accuracy"), l.name))
    for layer in layers:
        if layer.type == "SoftmaxWithLoss":
            del layer.top[:]
    del net.layer[:]
    net.layer.extend(layers)


#: relative path (under bvlc_caffe/) -> the upstream edits its legacy copies differ by.
UPSTREAM_EDITS = {
    "examples/cifar10/cifar10_full.prototxt": [_input_layer_name, _lrn_region],
    "examples/cifar10/cifar10_quick.prototxt": [_input_layer_name],
    "examples/feature_extraction/imagenet_val.prototxt": [_caffe_dir_paths, _drop_loss_layers],
    "examples/hdf5_classification/train_val.prototxt": [_fillers],
    "examples/mnist/lenet.prototxt": [_input_layer_name],
    "examples/siamese/mnist_siamese.prototxt": [_input_layer_name],
    "models/bvlc_alexnet/deploy.prototxt": [_input_layer_name],
    "models/bvlc_googlenet/deploy.prototxt": [_input_layer_name],
    "models/bvlc_googlenet/train_val.prototxt": [_fillers, _googlenet_loss2_top],
    "models/bvlc_reference_caffenet/deploy.prototxt": [_input_layer_name],
    "models/bvlc_reference_rcnn_ilsvrc13/deploy.prototxt": [_input_layer_name],
    "models/finetune_flickr_style/deploy.prototxt": [_input_layer_name],
    "models/finetune_flickr_style/train_val.prototxt": [_flickr_loss_layer],
}


def test_corpus_legacy_copies_upgrade_to_current():
    """Every V0/V1 copy upgrades to its V2 twin, up to the upstream edits listed above
    (applied to both sides, so everything else must still be equal)."""
    if not os.path.isdir(CORPUS):
        pytest.skip(f"corpus not present at {CORPUS}")
    pairs = corpus_pairs()
    if not pairs:
        pytest.skip("no legacy file in the corpus has a current-format twin")
    failures, used = [], set()
    for legacy_path, current_path in pairs:
        rel = os.path.relpath(current_path, os.path.join(CORPUS, CORPUS_CURRENT_DIR))
        legacy, current = read_any(legacy_path)[1], read_any(current_path)[1]
        for edit in UPSTREAM_EDITS.get(rel, []):
            edit(legacy)
            edit(current)
            used.add(rel)
        if legacy != current:
            diff = "".join(difflib.unified_diff(
                format_text(current).splitlines(True), format_text(legacy).splitlines(True),
                fromfile=current_path, tofile=legacy_path + " (upgraded)"))
            failures.append(f"{legacy_path} does not upgrade to {current_path}:\n{diff}")
    print(f"corpus: {len(pairs) - len(failures)} of {len(pairs)} legacy nets upgrade to "
          f"their current-format twin ({len(used)} twins differ by listed upstream edits)")
    assert not failures, "\n\n".join(failures)
    assert used == set(UPSTREAM_EDITS), f"edits listed for no file: {set(UPSTREAM_EDITS) - used}"
