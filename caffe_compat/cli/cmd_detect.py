"""``caffe-compat detect IMG... [--model NAME | --prototxt P --weights W --labels L] ...``.

R-CNN detection (Caffe's ``bvlc_reference_rcnn_ilsvrc13`` by default): selective search
proposals (or a proposals file), warped context crops scored by the net, per-class NMS,
labelled boxes drawn to PNG and/or written as JSON. The model is loaded once and every
image streams through it.

    caffe-compat detect cat.jpg -o cat_detections.png
    caffe-compat detect a.jpg b.jpg c.jpg -o out/ --json detections.json --top-k 10
    caffe-compat proposals cat.jpg -o cat_boxes.json
    caffe-compat detect cat.jpg --proposals cat_boxes.json --threshold 0.5 -o cat.png
    caffe-compat detect img.png --prototxt rcnn.prototxt --weights rcnn.caffemodel \\
        --labels classes.txt --bbox-regressor bbox_regressor.npz
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from caffe_compat.cli.netargs import MeanOption, ModelOptions, add_model_arguments, chosen_net
from caffe_compat.errors import CaffeCompatError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def parse_mean(text: str):
    """``"104,117,123"`` (the net's channel order) or ``"none"``."""
    if text.strip().lower() == "none":
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad mean {text!r}: use e.g. 104,117,123 or none") from None
    if not values:
        raise argparse.ArgumentTypeError(f"bad mean {text!r}: use e.g. 104,117,123 or none")
    return np.array(values)


NET = ModelOptions(
    "detect", "zoo R-CNN model, downloaded on first use; the default has 200 ILSVRC13 classes",
    default_model="bvlc_reference_rcnn_ilsvrc13",
    prototxt_help="deploy prototxt of your own R-CNN net (instead of --model)",
    labels_help="class names, one per line, for --prototxt", labels_required=True,
    mean=MeanOption("mean pixel in the net's channel order (default: the ILSVRC 2012 mean as "
                    "BVLC's detect.py)", type=parse_mean, metavar="B,G,R|none", default=False))


def _detector(args):
    from caffe_compat.recipes.rcnn import detector as rdet
    options = dict(context_pad=args.context_pad, batch_size=args.batch_size)
    if args.mean is not False:
        options["mean"] = args.mean
    if args.score_blob:
        options["score_blob"] = args.score_blob
    if args.bbox_regressor:
        from caffe_compat.recipes.rcnn.bbox_regression import BBoxRegressor
        if not os.path.isfile(args.bbox_regressor):
            raise FileNotFoundError(2, "No such file or directory", args.bbox_regressor)
        options["bbox_regressor"] = BBoxRegressor.load(args.bbox_regressor)
    choice = chosen_net(args, NET)
    if choice.prototxt:
        return rdet.RCNNDetector.from_files(choice.prototxt, choice.weights, choice.labels,
                                            **options), os.path.basename(choice.prototxt)
    return rdet.RCNNDetector.from_zoo(choice.model, **options), choice.model


def _picture_path(args, image: str, used: set) -> str:
    """OUT.png for one image; else ``OUT/<stem>_detections.png`` (``_2``, ``_3``, ... when
    two images share a name)."""
    out = args.output
    if len(args.images) == 1 and out.lower().endswith(IMAGE_EXTENSIONS):
        return out
    stem = os.path.splitext(os.path.basename(image))[0]
    name, k = f"{stem}_detections.png", 1
    while name in used:
        k += 1
        name = f"{stem}_detections_{k}.png"
    used.add(name)
    return os.path.join(out, name)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    from caffe_compat import io as caffe_io
    from caffe_compat.recipes.rcnn import detector as rdet

    for image in args.images:
        if not os.path.isfile(image):
            raise FileNotFoundError(2, "No such file or directory", image)
    proposal_file = None
    if args.proposals not in ("fast", "quality", "single"):
        if len(args.images) != 1:
            raise CaffeCompatError("--proposals FILE holds one image's boxes; give one image "
                                   "(or a selective search mode: fast, quality, single)")
        if not os.path.isfile(args.proposals):
            raise FileNotFoundError(2, "No such file or directory", args.proposals)
        proposal_file = rdet.read_proposals(args.proposals)
    det, model_name = _detector(args)
    results, used = [], set()
    images_bar = tqdm(args.images, unit="image", desc="images", file=sys.stderr, disable=None,
                      leave=False) if len(args.images) > 1 else args.images
    for path in images_bar:
        image = caffe_io.load_image(path)
        if proposal_file is not None:
            boxes = proposal_file
        else:
            boxes = rdet.proposals_for_image(image, args.proposals, max_boxes=args.max_proposals)
        with tqdm(total=len(boxes), unit="box", desc=os.path.basename(path), file=sys.stderr,
                  disable=None, leave=False) as bar:
            found = det.detect(image, boxes, threshold=args.threshold, nms_overlap=args.nms,
                               top_k=args.top_k, image_name=path, progress=bar.update)
        results.append(found.to_json())
        summary = ", ".join(f"{n} {s:.2f}" for n, s in zip(found.names()[:5], found.scores[:5]))
        print(f"{path}: {len(found)} detection(s) from {len(boxes)} proposals"
              + (f": {summary}" if summary else ""))
        if args.output:
            out = rdet.draw_detections(image, found, _picture_path(args, path, used))
            print(f"  -> {out}")
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(folder, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"model": model_name, "threshold": args.threshold, "nms": args.nms,
                       "images": results}, f, indent=1)
            f.write("\n")
        print(f"detections -> {args.json}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("detect", help="R-CNN object detection (selective search + CNN + NMS)",
                              description=__doc__.split("\n\n")[1],
                              epilog="\n\n".join(__doc__.split("\n\n")[2:]),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMG", help="image files")
    add_model_arguments(p, NET)
    p.add_argument("--score-blob", help="blob holding the class scores (default fc-rcnn, else "
                                        "the net's only output)")
    p.add_argument("--proposals", default="fast", metavar="fast|quality|single|FILE",
                   help="selective search mode, or a JSON from caffe-compat proposals / an .npy "
                        "of (xmin, ymin, xmax, ymax) boxes (default fast, as R-CNN)")
    p.add_argument("--max-proposals", type=int, default=None, metavar="N",
                   help="score only the N best-ranked selective search boxes")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="keep scores above this (SVM margin; default 0)")
    p.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="keep the K best detections of each image (after NMS)")
    p.add_argument("--nms", type=float, default=0.3, help="NMS IoU threshold (default 0.3)")
    p.add_argument("--bbox-regressor", metavar="NPZ",
                   help="bounding-box regressors (from the R-CNN training recipe)")
    p.add_argument("--context-pad", type=int, default=16,
                   help="pixels of context around each warped box (default 16)")
    p.add_argument("--batch-size", type=int, default=128, help="windows per forward (default 128)")
    p.add_argument("-o", "--output", metavar="OUT.png|DIR",
                   help="draw the detections: a picture for one image, else a folder")
    p.add_argument("--json", metavar="OUT.json", help="write every detection as JSON")
    p.set_defaults(func=run)
