"""Which net a subcommand loads is said with one set of options, declared once
(caffe_compat/cli/netargs.py): the recipe commands take a zoo model or your own files,
Caffe's tool commands take Caffe's ``--model``/``--weights``, and the same mistakes give
the same one-line errors everywhere."""
from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest

from caffe_compat.cli.main import build_parser, main
from caffe_compat.cli.netargs import NET_GROUP_TITLE

RECIPES = ["detect", "dream", "segment", "style", "finetune", "saliency", "heatmap",
           "fcn-score", "fcn-train"]
CAFFE_TOOL = ["train", "test", "time"]


def subparsers() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def group_options(parser: argparse.ArgumentParser, title_start: str) -> set:
    groups = [g for g in parser._action_groups if (g.title or "").startswith(title_start)]
    assert len(groups) == 1, [g.title for g in parser._action_groups]
    return {o for a in groups[0]._group_actions for o in a.option_strings}


@pytest.mark.parametrize("command", RECIPES)
def test_recipe_commands_take_the_shared_net_options(command):
    options = group_options(subparsers()[command], NET_GROUP_TITLE)
    assert {"--model", "--weights"} <= options
    if command != "fcn-train":          # trains a named FCN: no deploy prototxt to give
        assert "--prototxt" in options


def test_localize_train_takes_the_shared_net_options():
    localize = subparsers()["localize"]
    action = next(a for a in localize._actions if isinstance(a, argparse._SubParsersAction))
    assert {"--model", "--prototxt", "--weights", "--mean"} <= group_options(
        action.choices["train"], NET_GROUP_TITLE)


@pytest.mark.parametrize("command", CAFFE_TOOL)
def test_caffe_tool_commands_take_caffes_options(command):
    options = group_options(subparsers()[command], "net (as Caffe's tool")
    assert options == ({"--weights"} if command == "train" else {"--model", "--weights"})


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"caffe-compat {command}: error: "), err
    return err[0]


@pytest.mark.parametrize("argv, message", [
    (["segment", "{image}", "--prototxt", "{proto}"], "segment: --prototxt needs --weights"),
    (["dream", "{image}", "-o", "y.jpg", "--model", "bvlc_googlenet", "--prototxt", "{proto}",
      "--weights", "{proto}"], "dream: give --model or --prototxt/--weights, not both"),
    (["detect", "{image}", "--weights", "{proto}"], "detect: --weights goes with --prototxt"),
    (["saliency", "{image}", "-o", "y.png", "--prototxt", "{proto}", "--weights",
      "{missing}"], "missing.caffemodel"),
])
def test_the_same_mistake_is_the_same_one_line_error(tmp_path, capsys, argv, message):
    proto = tmp_path / "deploy.prototxt"
    proto.write_text('input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n')
    image = tmp_path / "x.jpg"
    cv2.imwrite(str(image), np.full((16, 16, 3), 128, np.uint8))
    argv = [a.format(proto=proto, image=image, missing=tmp_path / "missing.caffemodel")
            for a in argv]
    assert main(argv) == 2
    assert message in one_line_error(capsys, argv[0])
