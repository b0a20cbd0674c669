"""Reading prototxt text as Caffe does: quirks of real files, errors with line and
column, unknown (fork) fields, layer source lines, and Caffe's text output."""
import os
import warnings

import numpy as np
import pytest

from caffe_compat.errors import PrototxtError
from caffe_compat.formats.prototxt import (UnknownFieldWarning, format_text, load_text_source,
                                           parse_text, read_net, write_net)
from caffe_compat.proto import caffe_pb2

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "prototxt")


def fixture(name):
    return os.path.join(DATA, name)


def read_quiet(source, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownFieldWarning)
        return read_net(source, **kw)


# ---------------------------------------------------------------------------
# Quirks found in real files
# ---------------------------------------------------------------------------

def test_quirks_fixture_parses_every_quirk():
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # nothing unknown in it
        net = read_net(fixture("quirks.prototxt"))
    p = net.param
    assert p.name == "QuirkNet"                                     # single-quoted string
    data, conv, py, clip, relu = p.layer
    assert (data.name, data.type, list(data.top)) == ("data", "Input", ["image"])  # tabs
    assert list(data.input_param.shape[0].dim) == [1, 3, 6, 6]      # list syntax, "field{"
    # ";" and "," separators, "field{" without a space, <...> delimiters
    assert (conv.name, conv.type, list(conv.bottom), list(conv.top)) == \
        ("conv1", "Convolution", ["image"], ["conv1"])
    cp = conv.convolution_param
    assert (cp.num_output, list(cp.kernel_size), list(cp.pad)) == (2, [3], [1])
    assert cp.weight_filler.type == "xavier"
    # escaped quotes inside param_str; adjacent strings concatenate
    assert py.python_param.param_str == '{"scale": 2.0, \'name\': "a \\"quoted\\" word"}'
    assert py.python_param.module == "my_layers"
    assert (clip.clip_param.min, clip.clip_param.max) == (-1.5, 10.0)   # -1.5, 1e1
    assert relu.relu_param.negative_slope == pytest.approx(0.1)         # ".1"
    assert list(relu.propagate_down) == [False]
    assert [l.name for l in p.layer].count("clip") == 2             # duplicate layer names
    assert net.layer_lines == [3, 9, 14, 25, 32]


def test_crlf_bom_and_non_utf8_comment(tmp_path):
    text = ('\ufeffname: "n"\r\n# commentaire \xe9t\xe9\r\nlayer {\r\n  name: "r"\r\n'
            '  type: "ReLU"\r\n}\r\n')
    path = tmp_path / "crlf.prototxt"
    path.write_bytes(text.encode("utf-8"))
    net = read_net(str(path))
    assert net.param.name == "n" and net.param.layer[0].type == "ReLU"
    assert net.layer_lines == [3]
    latin = tmp_path / "latin1.prototxt"
    latin.write_bytes('# r\xe9seau\nlayer { name: "r" type: "ReLU" }\n'.encode("latin-1"))
    assert read_net(latin).param.layer[0].name == "r"        # os.PathLike accepted


def test_text_or_path_argument(tmp_path):
    net = read_net('layer { name: "a" type: "ReLU" }')
    assert net.path is None and net.layer_lines == [1]
    with pytest.raises(FileNotFoundError):
        read_net(str(tmp_path / "missing.prototxt"))
    text, path = load_text_source(fixture("v2_deploy.prototxt"))
    assert path == fixture("v2_deploy.prototxt") and text.startswith("# The same tiny net")


def test_binary_file_is_refused_clearly(tmp_path):
    path = tmp_path / "w.caffemodel"
    path.write_bytes(b"\n\x05tiny\x00\x01\x02")
    with pytest.raises(PrototxtError, match="binary file"):
        read_net(str(path))


def test_parse_text_any_message():
    s = parse_text("base_lr: 0.01; type: 'Adam'\ntest_iter: [1, 2]", caffe_pb2.SolverParameter)
    assert (s.type, list(s.test_iter)) == ("Adam", [1, 2])
    rule = caffe_pb2.NetStateRule()
    assert parse_text("phase: TEST stage: 'x'", rule) is rule and rule.stage == ["x"]


# ---------------------------------------------------------------------------
# Errors name file, line and column
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, line, col, fragment", [
    ('layer {\n  name: "a"\n', 3, 1, 'expected "}", got end of file'),
    ('layer {\n  name: "a"\n}\n}\n', 4, 1, 'expected a field name, got "}"'),
    ('layer {\n  name "a"\n}\n', 2, 8, 'expected ":" after field "name"'),
    ('layer {\n  name: "a\n}\n', 2, 9, "string literal is not closed"),
    ('name: "a"\nname: "b"\n', 2, 7, 'should not have multiple "name" fields'),
    ('layer {\n  convolution_param { }\n  convolution_param { }\n}\n', 3, 21,
     'multiple "convolution_param"'),
    ('layer {\n  convolution_param {\n\tnum_output: -3 }\n}\n', 3, 14, "out of range"),
    ('layer { convolution_param { num_output: 3.5 } }', 1, 41, "Couldn't parse integer"),
    ('force_backward: yes\n', 1, 17, "Expected \"true\" or \"false\""),
    ('layer { foo: 1 name: }', 1, 22, "expected a value"),
    ('layer {\n  fork ' + '{ a ' * 5000, 2, 404, "messages nested more than 100 deep"),
])
def test_syntax_errors_have_line_and_column(text, line, col, fragment):
    with pytest.raises(PrototxtError) as info:
        read_quiet(text)
    err = info.value
    assert (err.line, err.column) == (line, col)
    assert fragment in str(err)
    assert str(err).startswith(f"<string>:{line}:{col}: ")


def test_nesting_up_to_the_limit_parses():
    text = 'layer { name: "n" fork ' + '{ a ' * 98 + '{ }' + '}' * 98 + ' }'   # 100 deep
    assert read_quiet(text).param.layer[0].name == "n"


def test_error_message_names_the_file_and_quotes_the_original_line(tmp_path):
    path = tmp_path / "bad.prototxt"
    path.write_text('layer {\n  ceil_mode: true  convolution_param { num_output: x }\n}\n')
    with pytest.raises(PrototxtError) as info:
        read_quiet(str(path))
    err = info.value
    # The unknown field before the bad value is blanked, columns still match the file.
    assert str(err).startswith(f"{path}:2:52: ")
    assert "(in: ceil_mode: true  convolution_param { num_output: x })" in str(err)
    assert err.path == str(path)


# ---------------------------------------------------------------------------
# Fields of Caffe forks
# ---------------------------------------------------------------------------

def test_unknown_fork_fields_warn_once_each_with_file_and_line():
    """SSD's own fields (norm/permute/prior_box/detection_output_param) are in the schema
    with the fork's numbers and read; a field no schema knows still warns, once."""
    path = fixture("ssd_fork.prototxt")
    with pytest.warns(UnknownFieldWarning) as record:
        net = read_net(path)
    messages = [str(w.message) for w in record if issubclass(w.category, UnknownFieldWarning)]
    assert len(messages) == 1
    assert messages[0].startswith(f'{path}:18:5: unknown field "pad_type" in caffe.PoolingParameter')
    assert net.warnings == messages
    assert net.param.layer[3].permute_param.order == [0, 2, 3, 1]
    assert net.param.layer[2].norm_param.across_spatial is False
    # Everything else in those layers is kept.
    p = net.param
    assert [l.type for l in p.layer] == ["Input", "Pooling", "Normalize", "Permute", "Permute",
                                         "PriorBox", "DetectionOutput"]
    assert (p.layer[1].pooling_param.kernel_size, p.layer[1].pooling_param.stride) == (3, 2)
    assert list(p.layer[5].bottom) == ["conv4_3_norm", "data"]
    assert p.layer[6].include[0].phase == caffe_pb2.TEST      # after the skipped block
    assert net.layer_lines == [3, 9, 21, 35, 47, 54, 74]


def test_strict_makes_unknown_fields_fatal():
    with pytest.raises(PrototxtError) as info:
        read_net(fixture("ssd_fork.prototxt"), strict=True)
    assert (info.value.line, info.value.column) == (18, 5)
    assert '"pad_type"' in str(info.value) and "caffe.PoolingParameter" in str(info.value)


@pytest.mark.parametrize("text, line, column, value", [
    ('layer {\n  pooling_param {\n    pool: MAXX\n  }\n}\n', 3, 5, "MAXX"),
    ('layers {\n  type: PERMUTE\n}\n', 2, 3, "PERMUTE"),
    ('layer {\n  pooling_param { pool: 7 }\n}\n', 2, 19, "7"),
])
def test_unknown_enum_values_warn_with_file_and_line_and_strict_refuses(text, line, column, value):
    """A fork's enum value (SSD's V1 PERMUTE, CRF-RNN's MULTI_STAGE_MEANFIELD) must not
    abort the whole file: the field is skipped with a warning naming file and line."""
    with pytest.warns(UnknownFieldWarning) as record:
        net = read_net(text)
    [message] = [str(w.message) for w in record if issubclass(w.category, UnknownFieldWarning)]
    assert message.startswith(f"<string>:{line}:{column}: unknown value {value} of field")
    assert len(net.param.layer) == 1
    with pytest.raises(PrototxtError, match=f"has no value named {value}"):
        read_net(text, strict=True)


def test_fork_fields_of_refused_layers_are_read_past_without_a_warning():
    """FORK_FIELDS_SKIPPED: the parameters of fork layers that are refused by name."""
    import warnings
    text = ('layer { name: "d" type: "AnnotatedData" top: "data" '
            'transform_param { resize_param { height: 300 } emit_constraint { emit_type: CENTER } } '
            'annotated_data_param { batch_sampler { max_sample: 1 } } }')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = read_net(text)
    assert net.param.layer[0].type == "AnnotatedData" and not net.warnings


@pytest.mark.parametrize("unknown", [
    "foo: 1;", "foo: -inf,", "foo: 'a' \"b\"", "foo: [1, 2, 3]", "foo: []",
    "foo { bar { x: 1 } y: [{a: 1}, {b: 2}] }", "foo: { }", "foo < a: 'x}' >",
    "[ext.field]: 3", "foo: [{a: 1}, {b: 2}]", "foo: FORK_ENUM",
])
def test_every_form_of_unknown_value_is_skipped(unknown):
    text = f'layer {{ name: "a" {unknown} type: "ReLU" top: "t" }}\nlayer {{ name: "b" }}'
    with pytest.warns(UnknownFieldWarning):
        net = read_net(text)
    assert [(l.name, l.type) for l in net.param.layer] == [("a", "ReLU"), ("b", "")]
    assert list(net.param.layer[0].top) == ["t"]


def test_unknown_field_inside_unknown_block_is_not_reported_separately():
    with pytest.warns(UnknownFieldWarning) as record:
        read_net('layer { fork_param { other_unknown: 1 nested { x: 2 } } }')
    assert len([w for w in record if issubclass(w.category, UnknownFieldWarning)]) == 1


# ---------------------------------------------------------------------------
# Writing in Caffe's layout
# ---------------------------------------------------------------------------

def test_format_text_matches_caffe_print_layout():
    layer = caffe_pb2.LayerParameter(name="c", type="Convolution", bottom=["x"], top=["y"])
    layer.param.add(lr_mult=1, decay_mult=1)
    layer.convolution_param.num_output = 3
    layer.convolution_param.weight_filler.std = 0.01
    layer.convolution_param.weight_filler.type = "gaussian"
    layer.phase = caffe_pb2.TEST
    layer.python_param.param_str = "it's \"q\"\n"
    assert format_text(layer) == (
        'name: "c"\ntype: "Convolution"\nbottom: "x"\ntop: "y"\nparam {\n  lr_mult: 1\n'
        '  decay_mult: 1\n}\nphase: TEST\nconvolution_param {\n  num_output: 3\n'
        '  weight_filler {\n    type: "gaussian"\n    std: 0.01\n  }\n}\npython_param {\n'
        '  param_str: "it\\\'s \\"q\\"\\n"\n}\n')


@pytest.mark.parametrize("value, text", [
    (1.0, "1"), (0.1, "0.1"), (0.0001, "0.0001"), (1e-8, "1e-08"), (0.00390625, "0.00390625"),
    (1.0 / 3.0, "0.333333343"), (-1.5, "-1.5"), (1e20, "1e+20"), (float("inf"), "inf"),
    (float("-inf"), "-inf"), (float("nan"), "nan"), (999.982, "999.982"),
])
def test_floats_print_as_protobuf_simple_ftoa(value, text):
    assert format_text(caffe_pb2.ParamSpec(lr_mult=value)) == f"lr_mult: {text}\n"


def test_double_and_int64_fields_print_exactly():
    assert format_text(caffe_pb2.SolverParameter(random_seed=-1, delta=1e-8)) == \
        "random_seed: -1\ndelta: 1e-08\n"


def test_write_net_round_trips(tmp_path):
    net = read_net(fixture("v2_train_val.prototxt"))
    out = tmp_path / "out.prototxt"
    write_net(net.param, str(out))
    again = read_net(str(out))
    assert again.param == net.param
    # Floats read back bit-exactly from the shortest text.
    assert np.float32(again.param.layer[0].transform_param.scale) == np.float32(0.0078125)


def test_where_names_the_layer_position():
    net = read_net(fixture("v2_deploy.prototxt"))
    assert net.where(1) == fixture("v2_deploy.prototxt") + ":17"
    assert read_net('layer { name: "a" }').where(0) == "<string>:1"


def test_layers_in_list_syntax_get_their_own_lines():
    net = read_net('layer: [{name: "a"},\n {name: "b"}]\nlayer { name: "c" }')
    assert [l.name for l in net.param.layer] == ["a", "b", "c"]
    assert net.layer_lines == [1, 2, 3]
