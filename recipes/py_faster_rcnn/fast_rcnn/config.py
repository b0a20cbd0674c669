"""The part of py-faster-rcnn's ``fast_rcnn/config.py`` the RPN layers read: ``cfg``
with per-phase RPN settings, attribute access, and ``cfg_from_file``/``cfg_from_list``.

>>> cfg.TEST.RPN_POST_NMS_TOP_N
300
"""
from __future__ import annotations

import ast
from typing import Iterable


class AttrDict(dict):
    """A dict whose keys are also attributes (py-faster-rcnn uses EasyDict)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value


def _defaults() -> AttrDict:
    cfg = AttrDict()
    cfg.TRAIN = AttrDict(RPN_NMS_THRESH=0.7, RPN_PRE_NMS_TOP_N=12000,
                         RPN_POST_NMS_TOP_N=2000, RPN_MIN_SIZE=16)
    cfg.TEST = AttrDict(RPN_NMS_THRESH=0.7, RPN_PRE_NMS_TOP_N=6000,
                        RPN_POST_NMS_TOP_N=300, RPN_MIN_SIZE=16)
    cfg.USE_GPU_NMS = True
    cfg.GPU_ID = 0
    return cfg


#: The global configuration (py-faster-rcnn's ``__C``).
cfg = _defaults()


def _merge(src: dict, dst: AttrDict, path: str = "") -> None:
    for key, value in src.items():
        if key not in dst:
            raise KeyError(f"{path}{key} is not a valid config key")
        if isinstance(value, dict):
            _merge(value, dst[key], f"{path}{key}.")
        else:
            dst[key] = type(dst[key])(value) if dst[key] is not None else value


def cfg_from_file(filename: str) -> None:
    """Merge a YAML config file into ``cfg`` (needs PyYAML)."""
    import yaml
    with open(filename) as handle:
        _merge(yaml.safe_load(handle) or {}, cfg)


def cfg_from_list(cfg_list: Iterable[str]) -> None:
    """Set ``KEY.SUB value`` pairs from a flat list, e.g. from the command line."""
    items = list(cfg_list)
    if len(items) % 2:
        raise ValueError("cfg_from_list takes key/value pairs")
    for key, text in zip(items[0::2], items[1::2]):
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise KeyError(f"{key} is not a valid config key")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        node[leaf] = value


__all__ = ["cfg", "cfg_from_file", "cfg_from_list", "AttrDict"]
