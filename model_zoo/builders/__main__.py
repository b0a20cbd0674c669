"""``python -m caffe_compat.model_zoo.builders [--check]``: regenerate the zoo's deploy prototxts."""
from __future__ import annotations

import argparse
import sys

from . import PROTOTXT_ROOT, stale, write_all


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m caffe_compat.model_zoo.builders",
                                description=__doc__)
    p.add_argument("--check", action="store_true",
                   help="only report prototxts that differ from the builders (exit 1 if any)")
    args = p.parse_args(argv)
    if args.check:
        bad = stale()
        for name in bad:
            print(f"stale: {name}")
        return 1 if bad else 0
    for path in write_all():
        print(path.relative_to(PROTOTXT_ROOT.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
