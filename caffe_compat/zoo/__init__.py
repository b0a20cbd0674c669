"""The model zoo: the classic Caffe models by name, downloaded safely, cached, converted once.

>>> import mxnet as mx
>>> from caffe_compat import zoo
>>> net = zoo.load("bvlc_googlenet", ctx=mx.cpu())        # doctest: +SKIP
>>> zoo.labels("bvlc_googlenet")[281]                      # doctest: +SKIP
'n02123045 tabby, tabby cat'
>>> zoo.get("vgg16").mean_values                           # doctest: +SKIP
(103.939, 116.779, 123.68)

The first ``load`` downloads the weights (progress bar on a terminal; checked against
the registry's SHA-1) and converts them to a Gluon ``.params`` file keyed by that SHA-1
(``<cache>/params/<sha1>.params``); later loads read that file and need no network.

Registries (JSON, format ``caffe-compat-zoo/1``; later ones override earlier names):

1. the bundled ``caffe_compat/model_zoo/registry.json``;
2. the user registry ``$CAFFE_COMPAT_HOME/registry.json`` written by :func:`add`
   (``caffe-compat zoo add``);
3. the files listed in ``$CAFFE_COMPAT_REGISTRY`` (``os.pathsep``-separated).

An entry (paths relative to its registry file)::

    "my_net": {"description": "...", "license": "...",
               "prototxt": {"deploy": "my_net/deploy.prototxt"},
               "weights": {"urls": ["https://host/my_net.caffemodel"],
                           "sha1": "<40 hex digits or null>", "size": 1234},
               "mean": {"values": [104, 117, 123]},
               "input": {"size": [224, 224], "channels": 3, "channel_order": "BGR",
                         "raw_scale": 255},
               "labels": "my_net/labels.txt"}

One module per job: :mod:`~caffe_compat.zoo.registry` (entries and registries),
:mod:`~caffe_compat.zoo.cache` (downloaded files), :mod:`~caffe_compat.zoo.params`
(converted parameters), :mod:`~caffe_compat.zoo.loading` (``load``),
:mod:`~caffe_compat.zoo.user_models` (``add``). Download, mirror and cache rules live in
:mod:`caffe_compat.download`.
"""
from __future__ import annotations

from caffe_compat.download import DownloadError
from caffe_compat.zoo.cache import (VerifyResult, fetch, fetch_mean, import_file, is_cached,
                                    labels, mean, path, remove, verify)
from caffe_compat.zoo.loading import load, load_pycaffe
from caffe_compat.zoo.params import load_params, params_path, save_params, weights_sha1
from caffe_compat.zoo.registry import (FORMAT, REGISTRY_ENV, ModelEntry, ModelRef, RegistryError,
                                       RemoteFile, bundled_registry, get, list_models, models,
                                       read_registry, registry_paths, user_registry)
from caffe_compat.zoo.user_models import add

__all__ = ["DownloadError", "FORMAT", "REGISTRY_ENV", "ModelEntry", "ModelRef", "RegistryError",
           "RemoteFile", "VerifyResult", "add", "bundled_registry", "fetch", "fetch_mean", "get",
           "import_file", "is_cached", "labels", "list_models", "load", "load_params",
           "load_pycaffe", "mean", "models", "params_path", "path", "read_registry",
           "registry_paths", "remove", "save_params", "user_registry", "verify", "weights_sha1"]
