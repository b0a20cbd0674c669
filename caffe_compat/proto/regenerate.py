"""Regenerate ``caffe_pb2.py`` from ``caffe.proto`` (developer tool).

Usage (from the repository root)::

    python -m caffe_compat.proto.regenerate
    # or
    python caffe_compat/proto/regenerate.py

Requires the dev-only package ``grpcio-tools`` (bundles ``protoc``); it is not
a runtime dependency of caffe_compat.

Committed caffe_pb2.py was produced by: grpcio-tools 1.85.1 (libprotoc 35.1,
Python gencode 7.35.1).
Runtime requirement of that module: protobuf>=7.35.1,<8
(the gencode calls ValidateProtobufRuntimeVersion(7, 35, 1); an older runtime
or a different major version refuses to import it). If you regenerate with a
different grpcio-tools, update this note and the protobuf pin in setup.py.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_NAME = "caffe.proto"


def main(argv=None):
    try:
        from grpc_tools import protoc
    except ImportError:
        sys.stderr.write(
            "error: grpcio-tools is not installed; it is needed to regenerate "
            "caffe_pb2.py.\n"
            "Install it with:  pip install 'grpcio-tools==1.85.1'\n"
        )
        return 1

    # The protoc bundled with grpcio-tools needs its own well-known types on
    # the include path (caffe.proto imports none, but keep protoc happy).
    include_dirs = ["-I" + HERE]
    try:
        import importlib.resources as resources

        wkt = str(resources.files("grpc_tools") / "_proto")
        if os.path.isdir(wkt):
            include_dirs.append("-I" + wkt)
    except Exception:  # pragma: no cover - best effort only
        pass

    args = ["grpc_tools.protoc"] + include_dirs + [
        "--python_out=" + HERE,
        os.path.join(HERE, PROTO_NAME),
    ]
    status = protoc.main(args)
    if status != 0:
        sys.stderr.write("error: protoc failed with status %d\n" % status)
        return status
    print("regenerated %s" % os.path.join(HERE, "caffe_pb2.py"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
