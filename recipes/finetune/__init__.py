"""Transfer learning from any Caffe classifier (``caffe_compat.recipes.finetune``).

Three modes, one call (and ``caffe-compat finetune``):

* ``linear`` - softmax regression (L-BFGS) on the features of a layer of the frozen net;
* ``top``    - Caffe's SGD solver fine-tunes ``layer`` and everything above it, the rest
  frozen with ``lr_mult: 0``;
* ``all``    - the solver fine-tunes every layer (Caffe's flickr-style example).

The classifier (last InnerProduct) becomes ``<name>_<task>`` with one output per class
and lr_mult 10/20; images go through Caffe's ImageData preprocessing (cv2, BGR, resize,
crop, the model's mean); a stratified validation split is held out; the result is a
deployable ``deploy.prototxt`` + ``weights.caffemodel`` + ``labels.txt``.

    from caffe_compat.recipes.finetune import SourceModel, finetune, load_classifier
    src = SourceModel.from_zoo("bvlc_reference_caffenet")       # or .from_files(p, w)
    result = finetune(src, "flowers/", "out/", mode="top", epochs=5)
    clf = load_classifier("out/")                               # caffe.Classifier
    probs = clf.predict([caffe.io.load_image("rose.jpg")], oversample=False)
"""
from caffe_compat.recipes.finetune.dataset import (Dataset, DatasetError, Sample,
                                                   read_dataset, stratified_split, write_list)
from caffe_compat.recipes.finetune.linear import SoftmaxRegression, extract_features
from caffe_compat.recipes.finetune.model import SourceModel, build_block, read_deploy
from caffe_compat.recipes.finetune.preprocess import IMAGENET_MEAN, Preprocess
from caffe_compat.recipes.finetune.surgery import (HeadSpec, SurgeryError, classifier_cut,
                                                   cut_blob, deploy_net, find_classifier,
                                                   head_spec, train_net)
from caffe_compat.recipes.finetune.transfer import (MODES, FinetuneResult, finetune,
                                                    load_classifier)

__all__ = ["Dataset", "DatasetError", "FinetuneResult", "HeadSpec", "IMAGENET_MEAN", "MODES",
           "Preprocess", "Sample", "SoftmaxRegression", "SourceModel", "SurgeryError",
           "build_block", "classifier_cut", "cut_blob", "deploy_net", "extract_features",
           "find_classifier", "finetune", "head_spec", "load_classifier", "read_dataset",
           "read_deploy", "stratified_split", "train_net", "write_list"]
