"""Models a user adds to ``$CAFFE_COMPAT_HOME/registry.json`` (``caffe-compat zoo add``)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from caffe_compat.download import file_lock
from caffe_compat.zoo.registry import (_NAME, _SHA1, FORMAT, ModelEntry, RegistryError,
                                       _entry_from_json, get, user_registry)


def add(name: str, prototxt: Union[str, os.PathLike], url: Optional[str], sha1: Optional[str], *,
        mean: Optional[Sequence[float]] = None, labels: Optional[Union[str, os.PathLike]] = None,
        size: Optional[int] = None, license: str = "unknown", description: str = "",
        input_size: Optional[Sequence[int]] = None, channel_order: str = "BGR") -> ModelEntry:
    """Record a model in the user registry (``$CAFFE_COMPAT_HOME/registry.json``).

    The prototxt (and labels file) are copied next to the registry, so the entry keeps
    working if the originals move. ``sha1=None`` records an unverifiable download.
    """
    if not _NAME.match(name):
        raise RegistryError(f"bad model name {name!r}: use letters, digits, _ . + -")
    if sha1 is not None and not _SHA1.match(sha1.lower()):
        raise RegistryError(f"--sha1 {sha1!r} is not 40 hex digits")
    src = Path(prototxt)
    if not src.is_file():
        raise FileNotFoundError(2, "No such file or directory", str(src))
    reg = user_registry()
    folder = reg.parent / "user_models" / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, folder / "deploy.prototxt")
    entry: dict[str, Any] = {"description": description, "license": license,
                             "prototxt": {"deploy": f"user_models/{name}/deploy.prototxt"},
                             "weights": {"urls": [url] if url else [],
                                         "sha1": sha1.lower() if sha1 else None, "size": size},
                             "input": {"size": list(input_size) if input_size else None,
                                       "channels": len(mean) if mean else 3,
                                       "channel_order": channel_order, "raw_scale": 255}}
    if url is None:
        entry["weights"]["file"] = f"{name}.caffemodel"
    if mean:
        entry["mean"] = {"values": [float(v) for v in mean]}
    if labels:
        lab = Path(labels)
        if not lab.is_file():
            raise FileNotFoundError(2, "No such file or directory", str(lab))
        shutil.copyfile(lab, folder / lab.name)
        entry["labels"] = f"user_models/{name}/{lab.name}"
    _entry_from_json(name, entry, reg)  # validate before writing
    with file_lock(reg):
        doc = {"format": FORMAT, "models": {}}
        if reg.is_file():
            doc = json.loads(reg.read_text(encoding="utf-8"))
        doc["models"][name] = entry
        tmp = reg.with_name(reg.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, reg)
    return get(name)
