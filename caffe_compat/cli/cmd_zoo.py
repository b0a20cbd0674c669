"""``caffe-compat zoo``: list, fetch, verify, import, remove and add model-zoo models.

    caffe-compat zoo list                      # name, size, cached?, license
    caffe-compat zoo info bvlc_googlenet       # everything the registry knows
    caffe-compat zoo fetch bvlc_googlenet vgg16
    caffe-compat zoo fetch voc-fcn32s --no-verify   # no public SHA-1 for this one
    caffe-compat zoo path bvlc_googlenet [--prototxt]
    caffe-compat zoo verify                    # re-hash every cached file
    caffe-compat zoo import bvlc_alexnet ~/Downloads/bvlc_alexnet.caffemodel
    caffe-compat zoo remove bvlc_alexnet
    caffe-compat zoo add my_net --prototxt deploy.prototxt --url https://host/my.caffemodel \\
        --sha1 0123...abcd --mean 104,117,123 --labels labels.txt
"""
from __future__ import annotations

import argparse
import json
import sys

from caffe_compat.cli.netargs import parse_channel_mean


def _size(n) -> str:
    if n is None:
        return "?"
    for unit, div in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def run_list(args) -> int:
    from caffe_compat import zoo
    rows = []
    for name, entry in sorted(zoo.models().items()):
        cached = entry.is_cached
        if args.cached and not cached:
            continue
        size = entry.weights.size if entry.weights else None
        if cached and size is None:
            size = entry.weights_path.stat().st_size
        status = "cached" if cached else ("-" if entry.weights else "no weights")
        rows.append((name, _size(size), status, entry.license))
    header = ("model", "size", "cached", "license")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths + [0])).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths + [0])).rstrip())
    return 0


def run_info(args) -> int:
    from caffe_compat import zoo
    e = zoo.get(args.name)
    out = {"name": e.name, "description": e.description, "source": e.source,
           "license": e.license, "registry": str(e.registry),
           "prototxt": {k: str(v) for k, v in e.prototxt.items()},
           "weights": e.weights.to_json() if e.weights else None,
           "cached": str(e.weights_path) if e.is_cached else None,
           "mean": {"values": list(e.mean_values) if e.mean_values else None,
                    "file": e.mean_file.to_json() if e.mean_file else None},
           "input": {"size": list(e.input_size) if e.input_size else None,
                     "channels": e.channels, "channel_order": e.channel_order,
                     "raw_scale": e.raw_scale, **({"blobs": e.input_blobs} if e.input_blobs else {})},
           "labels": {k or "output": str(v) for k, v in e.labels.items()},
           "accuracy": e.accuracy, "aliases": list(e.aliases)}
    print(json.dumps(out, indent=2))
    return 0


def run_fetch(args) -> int:
    from caffe_compat import zoo
    for name in args.names:
        path = zoo.fetch(name, allow_unverified=args.no_verify)
        print(f"{zoo.get(name).name}: {path}")
        if args.mean and zoo.get(name).mean_file is not None:
            print(f"{zoo.get(name).name} mean: {zoo.fetch_mean(name, allow_unverified=args.no_verify)}")
    return 0


def run_path(args) -> int:
    from caffe_compat import zoo
    entry = zoo.get(args.name)
    if args.prototxt:
        print(entry.deploy)
        return 0
    print(entry.weights_path)
    if not entry.is_cached:
        print(f"caffe-compat zoo path: {entry.name} is not cached yet "
              f"(caffe-compat zoo fetch {entry.name})", file=sys.stderr)
        return 1
    return 0


def run_verify(args) -> int:
    from caffe_compat import zoo
    results = zoo.verify(args.names or None)
    if not results:
        print("no cached model files to verify")
        return 0
    for r in results:
        print(f"{'OK ' if r.ok else 'BAD'}  {r.model}  {r.path}  {r.message}")
    bad = [r for r in results if not r.ok]
    if bad:
        names = " ".join(sorted({r.model for r in bad}))
        print(f"{len(bad)} bad file(s); delete and fetch again with: caffe-compat zoo remove "
              f"{names} && caffe-compat zoo fetch {names}", file=sys.stderr)
        return 1
    return 0


def run_import(args) -> int:
    from caffe_compat import zoo
    path = zoo.import_file(args.name, args.file, allow_unverified=args.no_verify)
    print(f"{zoo.get(args.name).name}: installed {path}")
    return 0


def run_remove(args) -> int:
    from caffe_compat import zoo
    for name in args.names:
        removed = zoo.remove(name)
        if removed:
            for p in removed:
                print(f"removed {p}")
        else:
            print(f"{zoo.get(name).name}: nothing cached")
    return 0


def _hw(text: str) -> list:
    try:
        dims = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        dims = []
    if len(dims) != 2 or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use HEIGHT,WIDTH e.g. 224,224")
    return dims


def run_add(args) -> int:
    from caffe_compat import zoo
    sha1 = None if args.sha1.lower() == "none" else args.sha1
    entry = zoo.add(args.name, args.prototxt, args.url, sha1, mean=args.mean, labels=args.labels,
                    size=args.size, license=args.license, description=args.description,
                    input_size=args.input_size)
    print(f"added {entry.name} to {entry.registry}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="model zoo: list, fetch, verify, import, remove, add models",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    zsub = p.add_subparsers(dest="zoo_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    q = zsub.add_parser("list", help="known models: name, size, cached or not, license")
    q.add_argument("--cached", action="store_true", help="only models already downloaded")
    q.set_defaults(func=run_list)

    q = zsub.add_parser("info", help="everything the registry records about a model")
    q.add_argument("name")
    q.set_defaults(func=run_info)

    q = zsub.add_parser("fetch", help="download models' weights into the cache")
    q.add_argument("names", nargs="+", metavar="NAME")
    q.add_argument("--no-verify", action="store_true",
                   help="accept weights that have no SHA-1 in the registry")
    q.add_argument("--mean", action="store_true", help="also fetch the mean .binaryproto")
    q.set_defaults(func=run_fetch)

    q = zsub.add_parser("path", help="print where a model's weights (or prototxt) are")
    q.add_argument("name")
    q.add_argument("--prototxt", action="store_true", help="print the deploy prototxt path")
    q.set_defaults(func=run_path)

    q = zsub.add_parser("verify", help="re-hash cached files against the registry")
    q.add_argument("names", nargs="*", metavar="NAME")
    q.set_defaults(func=run_verify)

    q = zsub.add_parser("import", help="install weights you already have (checks the SHA-1)")
    q.add_argument("name")
    q.add_argument("file")
    q.add_argument("--no-verify", action="store_true",
                   help="accept a file for a model with no SHA-1 in the registry")
    q.set_defaults(func=run_import)

    q = zsub.add_parser("remove", help="delete models' cached files")
    q.add_argument("names", nargs="+", metavar="NAME")
    q.set_defaults(func=run_remove)

    q = zsub.add_parser("add", help="record your own model in the user registry")
    q.add_argument("name")
    q.add_argument("--prototxt", required=True, help="deploy prototxt (copied into the cache)")
    q.add_argument("--url", help="weights URL (omit to install them with zoo import)")
    q.add_argument("--sha1", required=True, help="SHA-1 of the weights (or 'none')")
    q.add_argument("--size", type=int, help="size of the weights in bytes")
    q.add_argument("--mean", type=parse_channel_mean, metavar="B,G,R",
                   help="per-channel mean values")
    q.add_argument("--labels", metavar="FILE", help="class names, one per line")
    q.add_argument("--input-size", type=_hw, metavar="H,W")
    q.add_argument("--license", default="unknown")
    q.add_argument("--description", default="")
    q.set_defaults(func=run_add)
