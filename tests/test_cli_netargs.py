"""Every subcommand that loads a net declares its "which net" options through
``caffe_compat.cli.netargs`` (one argparse group titled ``which net...``), and the shared
resolver's mistakes come out as one line with exit status 2."""
from __future__ import annotations

import argparse

import pytest

from caffe_compat.cli import netargs
from caffe_compat.cli.main import build_parser, main

#: The subcommands that load a net, and the form they take it in.
NET_COMMANDS = {
    "info": "positional", "convert": "positional", "draw": "positional",
    "train": "caffe", "test": "caffe", "time": "caffe",
    "detect": "recipe", "dream": "recipe", "segment": "recipe", "style": "recipe",
    "finetune": "recipe", "fcn-score": "recipe", "fcn-train": "recipe", "saliency": "recipe",
    "heatmap": "recipe", "localize train": "recipe",
}
#: ``zoo add --prototxt`` registers a model and ``zoo path --prototxt`` prints a path:
#: neither loads a net.
NOT_NET_LOADING = {"zoo add", "zoo path"}
NET_FLAGS = {"--model", "--prototxt", "--weights"}


def subcommand_parsers(parser: argparse.ArgumentParser, prefix: str = ""):
    """(name, parser) of every subcommand, nested ones (``localize train``) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                yield full, sub
                yield from subcommand_parsers(sub, full)


def which_net_groups(parser: argparse.ArgumentParser) -> dict:
    """{group title: set of option strings / positional dests} of its which-net groups."""
    return {g.title: {s for a in g._group_actions for s in (a.option_strings or [a.dest])}
            for g in parser._action_groups if (g.title or "").startswith(netargs.GROUP_TITLE)}


def test_every_net_loading_command_declares_its_net_through_netargs():
    found = {}
    for name, parser in subcommand_parsers(build_parser()):
        groups = which_net_groups(parser)
        declared = set().union(*groups.values()) if groups else set()
        # no --model/--prototxt/--weights or positional prototxt outside a netargs group
        grouped = {id(a) for g in parser._action_groups if g.title in groups
                   for a in g._group_actions}
        loose = {s for a in parser._actions if id(a) not in grouped
                 for s in (a.option_strings or [a.dest]) if s in NET_FLAGS | {"prototxt"}}
        if name not in NOT_NET_LOADING:
            assert not loose, f"{name} declares {sorted(loose)} outside caffe_compat.cli.netargs"
        if groups:
            assert len(groups) == 1, f"{name}: several which-net groups {list(groups)}"
            found[name] = declared
    assert set(found) == set(NET_COMMANDS)
    forms = {"positional": {"prototxt"}, "caffe": {"--weights"},
             "recipe": {"--model", "--weights"}}
    for name, form in NET_COMMANDS.items():
        assert forms[form] <= found[name], (name, found[name])
    # commands of one kind expose the same options: the NetSource recipes, Caffe's test/time
    assert found["saliency"] == found["heatmap"] == found["localize train"]
    assert found["test"] | {"--phase"} == found["time"]


@pytest.mark.parametrize("command, default", [("segment", "voc-fcn8s"), ("style", "vgg19"),
                                              ("detect", "bvlc_reference_rcnn_ilsvrc13")])
def test_the_default_model_is_the_one_help_names(command, default, tmp_path):
    import importlib
    options = importlib.import_module(f"caffe_compat.cli.cmd_{command}").NET
    parser = dict(subcommand_parsers(build_parser()))[command]
    model = next(a for a in parser._actions if "--model" in a.option_strings)
    assert f"(default {default})" in model.help
    argv = {"style": ["c.png", "s.png", "-o", "o.png"]}.get(command, ["img.jpg"])
    assert netargs.chosen_net(parser.parse_args(argv), options).model == default


@pytest.mark.parametrize("argv, command, message", [
    (["segment", "{img}", "--model", "voc-fcn8s", "--prototxt", "p", "--weights", "w"],
     "segment", "segment: give --model or --prototxt/--weights, not both"),
    (["detect", "{img}", "--weights", "w"], "detect", "detect: --weights goes with --prototxt"),
    (["detect", "{img}", "--prototxt", "p", "--weights", "w"], "detect",
     "detect: --prototxt needs --labels"),
    (["saliency", "{img}", "-o", "x.png", "--prototxt", "p"], "saliency",
     "saliency: --prototxt needs --weights"),
    (["saliency", "{img}", "-o", "x.png"], "saliency",
     "saliency: give --model NAME | --prototxt P --weights W"),
    (["test", "--iterations", "1"], "test", "test: --model=NET.prototxt is required"),
])
def test_shared_net_errors_are_one_line(tmp_path, capsys, argv, command, message):
    img = tmp_path / "img.jpg"
    img.write_bytes(b"")          # the net options are checked before any image is read
    assert main([a.format(img=img) for a in argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"caffe-compat {command.split()[0]}: error: ")
    assert message in lines[0]


def test_missing_net_files_are_one_line(tmp_path, capsys):
    img = tmp_path / "img.jpg"
    img.write_bytes(b"")
    assert main(["segment", str(img), "--prototxt", str(tmp_path / "gone.prototxt"),
                 "--weights", str(img)]) == 2
    missing = tmp_path / "gone.prototxt"
    assert capsys.readouterr().err.strip() == \
        f"caffe-compat segment: error: {missing}: No such file or directory"
