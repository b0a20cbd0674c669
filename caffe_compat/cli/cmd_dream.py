"""``caffe-compat dream IN.jpg -o OUT.jpg``: Google's DeepDream from the command line.

    caffe-compat dream sky.jpg -o dream.jpg                       # bvlc_googlenet, 4c
    caffe-compat dream sky.jpg -o dream.jpg --end inception_3b/5x5_reduce --iters 20
    caffe-compat dream sky.jpg -o guided.jpg --end inception_3b/output --guide flowers.jpg
    caffe-compat dream sky.jpg -o zoom.jpg --frames 30 --zoom 0.05   # zoom_0000.jpg ... + movie
    caffe-compat dream in.jpg -o out.jpg --prototxt deploy.prototxt --weights w.caffemodel \\
        --end conv5 --seed 0
    caffe-compat dream in.jpg -o out.jpg --model embedded          # the offline demo model

The zoo downloads bvlc_googlenet's weights on first use. The notebook's parameters
are the defaults (4 octaves of scale 1.4, 10 steps of size 1.5, jitter 32, clipping).
Runs on the GPU when MXNet sees one (``--gpu -1`` forces the CPU), with the device
fast path; ``--pycaffe`` runs the notebook's own code instead (same picture, slower).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from caffe_compat.cli.netargs import MeanOption, ModelOptions, add_model_arguments, chosen_net

EMBEDDED = "embedded"
NET = ModelOptions(
    "dream", f"zoo model name, or '{EMBEDDED}' for the small model shipped with caffe-compat",
    default_model="bvlc_googlenet", prototxt_help="deploy prototxt of your own net",
    weights_help="its .caffemodel",
    mean=MeanOption("per-channel mean of the net's BGR input (default: the notebook's "
                    "104,116,122, or a zoo model's own)"))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dream", help="DeepDream an image (Google's notebook, bvlc_googlenet by default)",
        description=__doc__.split("\n\n")[0].replace("``", ""),
        epilog="\n\n".join(__doc__.split("\n\n")[1:]).replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="image to dream on (JPEG, PNG, ...)")
    p.add_argument("-o", "--output", required=True,
                   help="output image; with --frames, OUT_0000.jpg ... and a movie beside it")
    add_model_arguments(p, NET)
    d = p.add_argument_group("dream (the notebook's defaults)")
    d.add_argument("--end", action="append", metavar="LAYER",
                   help="layer or blob to maximise (repeat for a sum of several); default "
                        "inception_4c/output (inception_3b/output for --model embedded)")
    d.add_argument("--octaves", type=int, default=4)
    d.add_argument("--octave-scale", type=float, default=1.4)
    d.add_argument("--iters", type=int, default=10, help="steps per octave")
    d.add_argument("--step-size", type=float, default=1.5)
    d.add_argument("--jitter", type=int, default=32)
    d.add_argument("--no-clip", action="store_true", help="do not clip pixels to 0..255")
    d.add_argument("--guide", help="guide image: dream towards its features at --end")
    d.add_argument("--frames", type=int, default=0, help="zoom sequence of N frames")
    d.add_argument("--zoom", type=float, default=0.05, help="zoom per frame (notebook: 0.05)")
    d.add_argument("--fps", type=float, default=8.0, help="frame rate of the zoom movie")
    d.add_argument("--seed", type=int, help="numpy seed of the jitter (same seed, same picture)")
    run = p.add_argument_group("running")
    run.add_argument("--gpu", help="GPU id (default: GPU 0 when MXNet sees one; -1: CPU)")
    run.add_argument("--pycaffe", action="store_true",
                     help="run the notebook's pycaffe code instead of the device fast path")
    p.set_defaults(func=run_dream)



def _context(flag):
    from caffe_compat.context import context_from_flag, gpu_count
    if flag is None:
        return context_from_flag("0" if gpu_count() else None)[0]
    return context_from_flag(flag)[0]


def _model_files(args) -> tuple[str, str, object]:
    """(label, deploy prototxt, zoo entry or weights path) from the model arguments."""
    choice = chosen_net(args, NET)
    if choice.prototxt:
        return Path(choice.prototxt).name, choice.prototxt, choice.weights
    if choice.model == EMBEDDED:
        from caffe_compat.recipes.deepdream.models import embedded_model
        prototxt, weights = embedded_model()
        return "embedded model", str(prototxt), str(weights)
    from caffe_compat import zoo
    entry = zoo.get(choice.model)
    return entry.name, str(entry.deploy), entry


def _check_end(prototxt: str, end) -> None:
    """Fail before any download when ``--end`` is not in the net."""
    from caffe_compat.engine.graph import build_graph
    from caffe_compat.formats.net_filter import filter_net
    from caffe_compat.formats.prototxt import read_net
    from caffe_compat.recipes.deepdream.targets import resolve_targets
    definition = filter_net(read_net(prototxt), 1)
    resolve_targets(build_graph(definition.param, definition.path, definition.layer_lines), end)


def run_dream(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from caffe_compat import context
    from caffe_compat.errors import CaffeCompatError
    from caffe_compat.recipes.deepdream import models
    from caffe_compat.recipes.deepdream.images import load_image, save_image
    from caffe_compat.recipes.deepdream.zoom import ffmpeg_available, zoom_sequence

    for n, what in ((args.octaves, "--octaves"), (args.iters, "--iters")):
        if n < 1:
            raise CaffeCompatError(f"{what} must be at least 1")
    if args.octave_scale <= 1.0:
        raise CaffeCompatError("--octave-scale must be above 1")
    if args.frames < 0 or not 0 <= args.zoom < 1:
        raise CaffeCompatError("--frames must be >= 0 and --zoom in [0, 1)")
    img = load_image(args.input)
    guide = load_image(args.guide) if args.guide else None
    label, prototxt, source = _model_files(args)
    default_end = models.EMBEDDED_END if args.model == EMBEDDED else models.GOOGLENET_END
    end = args.end[0] if args.end and len(args.end) == 1 else (args.end or default_end)
    _check_end(prototxt, end)
    if guide is not None and not isinstance(end, str):
        raise CaffeCompatError("--guide dreams on one --end layer")
    ctx = _context(args.gpu)
    if ctx.device_type == "gpu":
        context.set_mode_gpu()
        context.set_device(ctx.device_id)
    else:
        context.set_mode_cpu()

    from caffe_compat import zoo
    weights = zoo.fetch(source) if isinstance(source, zoo.ModelEntry) else source
    mean = models.NOTEBOOK_MEAN   # the notebook's; another zoo model brings its own
    if (isinstance(source, zoo.ModelEntry) and source.name != "bvlc_googlenet"
            and source.mean_values and len(source.mean_values) == 3):
        mean = np.float32(source.mean_values)
    if args.mean is not None:
        mean = np.float32(args.mean)
    path = "pycaffe (notebook code)" if args.pycaffe else "device fast path"
    print(f"dreaming with {label} at {', '.join([end] if isinstance(end, str) else end)} "
          f"on {ctx} ({path})", file=sys.stderr)
    if args.pycaffe:
        from caffe_compat.recipes.deepdream import notebook
        net = models.load_dream_net(prototxt, weights, end=end, mean=mean)
        objective = notebook.objective_L2
        if guide is not None:
            objective = notebook.guide_objective(notebook.guide_features(net, guide, end))

        def dream_fn(frame, progress):
            return notebook.deepdream(net, frame, args.iters, args.octaves, args.octave_scale,
                                      end=end, clip=not args.no_clip, progress=progress,
                                      step_size=args.step_size, jitter=args.jitter,
                                      objective=objective)
    else:
        from caffe_compat.recipes.deepdream.fast import FastDreamer
        if isinstance(source, zoo.ModelEntry):
            dreamer = FastDreamer(zoo.load(source, ctx=ctx), end=end, mean=mean)
        else:
            dreamer = FastDreamer.from_files(prototxt, weights, end=end, ctx=ctx, mean=mean)
        objective = dreamer.guide_features(guide) if guide is not None else None

        def dream_fn(frame, progress):
            return dreamer.deepdream(frame, args.iters, args.octaves, args.octave_scale,
                                     clip=not args.no_clip, progress=progress,
                                     step_size=args.step_size, jitter=args.jitter,
                                     objective=objective)

    if args.seed is not None:
        np.random.seed(args.seed)
    frames = max(args.frames, 1)
    done = {"frames": 0}
    bar = tqdm(total=frames * args.octaves * args.iters, unit="step", file=sys.stderr,
               disable=None, desc="dream")

    def progress(octave, i):
        prefix = f"frame {done['frames'] + 1}/{frames} " if args.frames else ""
        bar.set_description(f"{prefix}octave {octave + 1}/{args.octaves}", refresh=False)
        bar.update(1)

    def on_frame(i, _path):
        done["frames"] = i + 1

    out = Path(args.output)
    with bar:
        if not args.frames:
            frame = dream_fn(img, progress)
        else:
            result = zoom_sequence(lambda f: dream_fn(f, progress), img, args.frames, args.zoom,
                                   out_dir=out.parent,
                                   pattern=f"{out.stem}_%04d{out.suffix or '.jpg'}",
                                   video=out.stem, fps=args.fps, on_frame=on_frame)
    if not args.frames:
        save_image(frame, out)
        print(f"wrote {out}")
        return 0
    print(f"wrote {len(result.frames)} frames {result.frames[0]} .. {result.frames[-1]}")
    print(f"wrote {result.video}" + ("" if ffmpeg_available() else
                                     " (pip install imageio-ffmpeg for an mp4)"))
    return 0
