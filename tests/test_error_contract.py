"""The CLI's error contract: a user error prints ONE line naming the file (and line or
layer) and exits with status 2; ``--debug`` shows the traceback instead.

One case per mistake that used to end in a traceback or name nothing: a solver file
Caffe cannot run, a GPU MXNet does not see, a corrupt image, an unknown bottom blob.
"""
from __future__ import annotations

import textwrap

import pytest

from caffe_compat.cli.main import main
from caffe_compat.context import gpu_count
from caffe_compat.errors import SolverError

NET = textwrap.dedent('''\
    name: "tiny"
    layer { name: "data" type: "Input" top: "data"
            input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
    layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
            inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
    layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
''')


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"caffe-compat {command}: error: "), err
    return lines[0]


# ---- solver files are checked when read --------------------------------------------

@pytest.mark.parametrize("settings, line, message", [
    ('lr_policy: "stpe"\nstepsize: 10', 3, 'unknown lr_policy "stpe" (known: fixed, step,'),
    ('type: "Adamm"\nlr_policy: "fixed"', 3, 'unknown solver type "Adamm" (known: SGD,'),
    ('lr_policy: "step"\ngamma: 0.1', 3, 'lr_policy "step" needs a positive stepsize'),
    ('lr_policy: "multistep"\ngamma: 0.1', 3, 'lr_policy "multistep" needs at least one stepvalue'),
    ('lr_policy: "poly"\npower: 2', 3, 'lr_policy "poly" needs a positive max_iter'),
    ('lr_policy: "fixed"\nregularization_type: "L3"', 4, 'unknown regularization_type "L3"'),
])
def test_solver_mistakes_name_file_and_line(tmp_path, capsys, settings, line, message):
    (tmp_path / "net.prototxt").write_text(NET)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{tmp_path / "net.prototxt"}"\nbase_lr: 0.1\n{settings}\n')
    assert main(["train", "--solver", str(solver)]) == 2
    assert f"{solver}:{line}: {message}" in one_line_error(capsys, "train")
    import caffe_compat as caffe
    with pytest.raises(SolverError, match="solver.prototxt"):     # the API: when read
        caffe.get_solver(str(solver))


def test_solver_without_a_net_names_the_file(tmp_path, capsys):
    solver = tmp_path / "solver.prototxt"
    solver.write_text('base_lr: 0.1\nlr_policy: "fixed"\n')
    assert main(["train", "--solver", str(solver)]) == 2
    assert f"{solver}: the solver names no train net" in one_line_error(capsys, "train")


def test_debug_shows_the_traceback(tmp_path):
    solver = tmp_path / "solver.prototxt"
    solver.write_text('base_lr: 0.1\nlr_policy: "stpe"\n')
    with pytest.raises(SolverError):
        main(["--debug", "train", "--solver", str(solver)])


# ---- devices -------------------------------------------------------------------------

@pytest.mark.skipif(gpu_count() > 0, reason="needs an MXNet that sees no GPU")
@pytest.mark.parametrize("argv, command", [
    (["test", "--model", "{net}", "--gpu", "0", "--iterations", "1"], "test"),
    (["train", "--solver", "{solver}", "--gpu", "all"], "train"),
    (["train", "--solver", "{solver}", "--gpu", "zero"], "train"),
])
def test_gpu_flag_without_that_gpu_is_a_user_error(tmp_path, capsys, argv, command):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path / "net.prototxt"}"\nbase_lr: 0.1\nlr_policy: "fixed"\n')
    argv = [a.format(net=tmp_path / "net.prototxt", solver=tmp_path / "solver.prototxt")
            for a in argv]
    assert main(argv) == 2
    line = one_line_error(capsys, command)
    assert f"--gpu {argv[-1] if command == 'train' else '0'}:" in line
    assert "GPU" in line


# ---- images --------------------------------------------------------------------------

@pytest.fixture
def net_files(tmp_path):
    from caffe_compat.engine.network import CaffeNet
    proto = tmp_path / "deploy.prototxt"
    proto.write_text(NET)
    weights = tmp_path / "w.caffemodel"
    CaffeNet.from_prototxt(NET).save_caffemodel(str(weights))
    corrupt = tmp_path / "photo.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is no JPEG\n\nat all\n")
    return proto, weights, corrupt


@pytest.mark.parametrize("command", ["saliency", "heatmap", "proposals"])
def test_corrupt_image_is_one_line_naming_the_file(net_files, tmp_path, capsys, command):
    proto, weights, corrupt = net_files
    argv = [command, str(corrupt)]
    if command != "proposals":
        argv += ["--prototxt", str(proto), "--weights", str(weights),
                 "-o", str(tmp_path / "out.png")]
    assert main(argv) == 2
    assert f"{corrupt}: cannot read the image: " in one_line_error(capsys, command)


def test_opencv_reads_refuse_in_one_line(tmp_path):
    """A PNG whose header claims more pixels than OpenCV allows (cv2.error from imdecode)
    and an empty file are ImageReadErrors naming the file, from disk and from memory."""
    import struct
    import zlib
    from caffe_compat.errors import ImageReadError
    from caffe_compat.images import decode_bgr, read_bgr

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", 200000, 200000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    for read in (read_bgr, lambda p: decode_bgr(p.read_bytes(), p)):
        with pytest.raises(ImageReadError, match=r"huge.png: cannot read the image: OpenCV refuses"):
            read(huge)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty.png: cannot read the image: the file is empty"):
        read_bgr(tmp_path / "empty.png")


# ---- nets ----------------------------------------------------------------------------

def test_unknown_bottom_names_file_and_line(tmp_path, capsys):
    proto = tmp_path / "net.prototxt"
    proto.write_text(NET.replace('bottom: "data" top: "fc"', 'bottom: "dta" top: "fc"'))
    assert main(["info", str(proto)]) == 2
    assert (f'{proto}:4: layer "fc" (type InnerProduct): unknown bottom blob \'dta\''
            in one_line_error(capsys, "info"))
