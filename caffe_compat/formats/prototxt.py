"""Reading and writing Caffe text-format files (``.prototxt``) the way Caffe does.

Caffe reads a prototxt with protobuf's ``TextFormat::Parse`` and then upgrades
legacy nets (``upgrade_proto.cpp``). This module does the same through the Python
protobuf runtime, plus two things Caffe cannot do:

* fields that are not in BVLC's ``caffe.proto`` (Caffe forks: SSD's
  ``permute_param``, ``ceil_mode`` in ``pooling_param`` ...) are skipped with their
  whole value, each reported once as an :class:`UnknownFieldWarning` naming the
  file and line (``strict=True`` makes them a :class:`PrototxtError`);
* the source line of every layer is kept (:attr:`NetDefinition.layer_lines`), so
  later errors can say where a layer was defined.

Usage::

    from caffe_compat.formats.prototxt import read_net, parse_text, write_net

    net = read_net("deploy.prototxt")          # or the prototxt text itself
    net.param.layer[0].type                     # "Input" (upgraded to the V2 format)
    net.layer_lines[0]                          # line of that layer in deploy.prototxt

    solver = parse_text("base_lr: 0.01", caffe_pb2.SolverParameter())
    write_net(net.param, "upgraded.prototxt")   # Caffe's TextFormat::Print layout

How the reader works: a tokenizer walks the text alongside the message
descriptors and blanks every unknown field (name, value and separator) with
spaces, keeping newlines, so the cleaned text has the original's lines and
columns; ``google.protobuf.text_format.Parse`` (which, like Caffe's
``TextFormat::Parse``, refuses a non-repeated field given twice) then fills the
message, and its ``line:column`` errors point into the original file.
"""
from __future__ import annotations

import bisect
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Union

import numpy as np
from google.protobuf import text_encoding, text_format
from google.protobuf.message import Message

from caffe_compat.errors import PrototxtError
from caffe_compat.formats.upgrade import (LayerOrigins, NetUpgradeError, UpgradeWarning,
                                          upgrade_net_as_needed)
from caffe_compat.proto import caffe_pb2

__all__ = [
    "UnknownFieldWarning", "NetDefinition", "ParsedText", "read_net", "parse_net",
    "read_label_map", "FORK_FIELDS_SKIPPED",
    "net_layer_origins",
    "parse_text", "parse_text_detailed", "load_text_source", "format_text",
    "write_text", "write_net",
]

PathOrText = Union[str, "os.PathLike[str]"]


class UnknownFieldWarning(UserWarning):
    """A prototxt field that BVLC Caffe's schema does not have was skipped."""


@dataclass
class NetDefinition:
    """A net read from a prototxt: the upgraded message plus where each layer came from.

    ``layer_lines[i]`` is the 1-based line of ``param.layer[i]``'s opening
    (``layer {`` / ``layers {``) in ``path``; an ``Input`` layer synthesized from a
    legacy ``input:`` header gets the line of the first ``input`` field. ``warnings``
    holds the unknown-field and upgrade messages (also issued as Python warnings);
    ``upgrades`` names the upgrade steps applied (e.g. ``["V1->V2", "input fields"]``).

    >>> net = read_net('layer { name: "x" type: "ReLU" bottom: "a" top: "a" }')
    >>> net.layer_lines, net.param.layer[0].type
    ([1], 'ReLU')
    """
    param: caffe_pb2.NetParameter
    path: Optional[str] = None
    layer_lines: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    upgrades: list = field(default_factory=list)

    def where(self, index: int) -> str:
        """``"path:line"`` of layer ``index`` for messages (``"<string>:line"`` for text)."""
        line = self.layer_lines[index] if 0 <= index < len(self.layer_lines) else None
        where = self.path or "<string>"
        return f"{where}:{line}" if line else where


@dataclass
class ParsedText:
    """Result of :func:`parse_text_detailed`.

    ``top_level`` lists ``(field_name, line)`` for every top-level field in file
    order; ``warnings`` holds one message per distinct unknown field.
    """
    message: Message
    path: Optional[str]
    top_level: list
    warnings: list


# ---------------------------------------------------------------------------
# Tokenizer (same token classes as protobuf's text_format.Tokenizer)
# ---------------------------------------------------------------------------

class _Token(NamedTuple):
    kind: str      # "ident", "number", "string", "symbol" or "eof"
    text: str
    start: int     # character offsets into the text
    end: int


# Nesting limit (protobuf's default recursion limit): a real net nests a few levels, and
# the walker and text_format recurse per level.
_MAX_NESTING = 100

_SKIP = re.compile(r"(?:\s|#[^\n]*)+")
_IDENT = re.compile(r"[a-zA-Z_][0-9a-zA-Z_+-]*")
_NUMBER = re.compile(r"(?:[0-9+-]|\.[0-9])[0-9a-zA-Z_.+-]*")
_STRINGS = {
    q: re.compile(r"{q}[^{q}\n\\]*(?:\\.[^{q}\n\\]*)*(?P<close>{q})?".format(q=q))
    for q in ("'", '"')
}


class _Tokens:
    """The token list of a text, with line/column lookup for offsets."""

    def __init__(self, text: str, path: Optional[str]):
        self.text, self.path = text, path
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.items = self._tokenize()

    def line_col(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def error(self, message: str, offset: int) -> PrototxtError:
        line, col = self.line_col(offset)
        return PrototxtError(message, self.path, line, col)

    def _tokenize(self) -> list:
        text, pos, out = self.text, 0, []
        n = len(text)
        while True:
            m = _SKIP.match(text, pos)
            if m:
                pos = m.end()
            if pos >= n:
                out.append(_Token("eof", "", n, n))
                return out
            ch = text[pos]
            if ch in _STRINGS:
                m, kind = _STRINGS[ch].match(text, pos), "string"
                if m.group("close") is None:
                    raise self.error("string literal is not closed on its line", pos)
            elif (m := _IDENT.match(text, pos)):
                kind = "ident"
            elif (m := _NUMBER.match(text, pos)):
                kind = "number"
            else:
                out.append(_Token("symbol", ch, pos, pos + 1))
                pos += 1
                continue
            out.append(_Token(kind, m.group(), pos, m.end()))
            pos = m.end()


# ---------------------------------------------------------------------------
# Walker: follows the descriptors, finds unknown fields and top-level lines
# ---------------------------------------------------------------------------

_CLOSE = {"{": "}", "<": ">"}


class _UnknownField(NamedTuple):
    message_type: str
    name: str
    start: int
    end: int
    enum_value: Optional[str] = None   # set when the field is known but its value is not


#: Fields of Caffe forks read past on purpose, without a warning: each belongs to a fork
#: layer that caffe-compat refuses by name (so the value could change nothing), or is
#: an implementation hint. The README's fork table lists them.
FORK_FIELDS_SKIPPED = {
    # SSD (weiliu89/caffe ssd, also the Intel branch): the training data, loss and
    # evaluation layers AnnotatedData, MultiBoxLoss, DetectionEvaluate.
    ("caffe.LayerParameter", "annotated_data_param"): "SSD AnnotatedData (training data)",
    ("caffe.LayerParameter", "multibox_loss_param"): "SSD MultiBoxLoss (training loss)",
    ("caffe.LayerParameter", "detection_evaluate_param"): "SSD DetectionEvaluate (mAP during training)",
    ("caffe.TransformationParameter", "resize_param"): "SSD data augmentation (AnnotatedData)",
    ("caffe.TransformationParameter", "distort_param"): "SSD data augmentation (AnnotatedData)",
    ("caffe.TransformationParameter", "expand_param"): "SSD data augmentation (AnnotatedData)",
    ("caffe.TransformationParameter", "emit_constraint"): "SSD data augmentation (AnnotatedData)",
    ("caffe.TransformationParameter", "random_resize_param"): "Intel branch YOLO data augmentation",
    # Intel branch YOLO/video layers.
    ("caffe.LayerParameter", "region_loss_param"): "Intel YOLO RegionLoss (training loss)",
    ("caffe.LayerParameter", "eval_detection_param"): "Intel YOLO EvalDetection (evaluation)",
    ("caffe.LayerParameter", "video_data_param"): "Intel VideoData (camera input)",
    # The snapshot layout of yufacedetectnet's Caffe (its solvers): old-style 4-D blob
    # shapes in .caffemodel snapshots; the numbers are the same either way.
    ("caffe.SolverParameter", "store_blobs_in_old_format"): "snapshot blob-shape layout",
    # R-FCN's online hard example mining (training only).
    ("caffe.LayerParameter", "box_annotator_ohem_param"): "R-FCN BoxAnnotatorOHEM (training)",
    # SegNet/ENet data layer; CRF-RNN's mean-field layer.
    ("caffe.LayerParameter", "dense_image_data_param"): "SegNet DenseImageData (training data)",
    ("caffe.LayerParameter", "multi_stage_meanfield_param"): "CRF-RNN MultiStageMeanfield",
    ("caffe.V1LayerParameter", "multi_stage_meanfield_param"): "CRF-RNN MultiStageMeanfield",
}


class _Walker:
    """Checks the structure of a text-format message against its descriptor.

    Records every unknown field (to be blanked) and the top-level fields with
    their lines; raises :class:`PrototxtError` on a syntax error. Values of known
    scalar fields are only skipped here: ``text_format`` converts them later.
    """

    def __init__(self, tokens: _Tokens, strict: bool):
        self.tokens, self.strict = tokens, strict
        self.items = tokens.items
        self.i = 0
        self.unknown: list[_UnknownField] = []
        self.skipped: list[_UnknownField] = []      # FORK_FIELDS_SKIPPED, no warning
        self.top_level: list[tuple[str, int]] = []
        self.depth = 0      # messages open around the current token

    # -- token helpers ------------------------------------------------------
    def peek(self) -> _Token:
        return self.items[self.i]

    def advance(self) -> _Token:
        tok = self.items[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def try_consume(self, text: str) -> bool:
        tok = self.peek()
        if tok.kind == "symbol" and tok.text == text:
            self.i += 1
            return True
        return False

    def expect(self, text: str, what: str = "") -> None:
        if not self.try_consume(text):
            raise self._unexpected(f'"{text}"' + (f" {what}" if what else ""))

    def _unexpected(self, wanted: str) -> PrototxtError:
        tok = self.peek()
        got = ("end of file" if tok.kind == "eof"
               else tok.text if tok.kind == "string" else f'"{tok.text}"')
        return self.tokens.error(f"expected {wanted}, got {got}", tok.start)

    def _previous_end(self) -> int:
        return self.items[self.i - 1].end if self.i else 0

    # -- grammar --------------------------------------------------------------
    def walk_top(self, desc) -> None:
        self._walk_body(desc, close=None, top=True)

    def _walk_body(self, desc, close: Optional[str], top: bool = False) -> None:
        while True:
            tok = self.peek()
            if tok.kind == "eof":
                if close is None:
                    return
                raise self._unexpected(f'"{close}"')
            if close is not None and tok.kind == "symbol" and tok.text == close:
                self.i += 1
                return
            self._walk_field(desc, top)

    def _field_name(self) -> tuple[str, bool]:
        """Consumes a field name; returns (name, is_bracketed_extension_name)."""
        tok = self.peek()
        if tok.kind == "ident":
            self.i += 1
            return tok.text, False
        if tok.kind == "symbol" and tok.text == "[":
            self.i += 1
            parts = []
            while not self.try_consume("]"):
                part = self.advance()
                if part.kind == "eof":
                    raise self._unexpected('"]"')
                parts.append(part.text)
            return "[" + "".join(parts) + "]", True
        raise self._unexpected("a field name")

    def _walk_field(self, desc, top: bool) -> None:
        name_tok = self.peek()
        name, bracketed = self._field_name()
        fdesc = None if (bracketed or desc is None) else desc.fields_by_name.get(name)
        if fdesc is None and desc is not None and (desc.full_name, name) in FORK_FIELDS_SKIPPED:
            self._skip_unknown_value()
            self._consume_separator()
            self.skipped.append(_UnknownField(desc.full_name, name, name_tok.start,
                                              self._previous_end()))
            return
        if fdesc is None:
            if desc is not None and self.strict:
                raise self.tokens.error(
                    f'unknown field "{name}" in {desc.full_name} (not in BVLC caffe.proto)',
                    name_tok.start)
            self._skip_unknown_value()
            self._consume_separator()
            if desc is not None:
                self.unknown.append(
                    _UnknownField(desc.full_name, name, name_tok.start, self._previous_end()))
            return
        if fdesc.cpp_type == fdesc.CPPTYPE_MESSAGE:
            self.try_consume(":")
            walk_one = lambda: self._walk_message_value(fdesc.message_type)  # noqa: E731
        elif fdesc.enum_type is not None:
            self.expect(":", f'after field "{name}"')
            walk_one = lambda: self._check_enum_value(desc, fdesc, name_tok)  # noqa: E731
        else:
            self.expect(":", f'after field "{name}"')
            walk_one = self._skip_scalar

        def walk_value(line_offset: int) -> None:
            if top:     # one entry per value, so `layer: [{...}, {...}]` gives two
                self.top_level.append((name, self.tokens.line_col(line_offset)[0]))
            walk_one()

        if fdesc.is_repeated and self.try_consume("["):
            if not self.try_consume("]"):
                while True:
                    walk_value(self.peek().start)
                    if self.try_consume("]"):
                        break
                    self.expect(",", "or \"]\" in a list")
        else:
            walk_value(name_tok.start)
        self._consume_separator()

    def _walk_message_value(self, desc) -> None:
        tok = self.peek()
        if tok.kind == "symbol" and tok.text in _CLOSE:
            if self.depth >= _MAX_NESTING:
                raise self.tokens.error(f"messages nested more than {_MAX_NESTING} deep",
                                        tok.start)
            self.i += 1
            self.depth += 1
            self._walk_body(desc, close=_CLOSE[tok.text])
            self.depth -= 1
        else:
            raise self._unexpected('"{"')

    def _check_enum_value(self, desc, fdesc, name_tok: _Token) -> None:
        """An enum value no Caffe schema here knows (a fork's) is blanked with its
        field and reported, like an unknown field (strict: an error)."""
        tok = self.peek()
        self._skip_scalar()
        known = (tok.text in fdesc.enum_type.values_by_name if tok.kind == "ident" else
                 _enum_number_known(fdesc.enum_type, tok.text) if tok.kind == "number" else True)
        if known:
            return
        if self.strict:
            raise self.tokens.error(f'{fdesc.enum_type.full_name} has no value named {tok.text}',
                                    tok.start)
        self.unknown.append(_UnknownField(desc.full_name, fdesc.name, name_tok.start,
                                          self._previous_end(), enum_value=tok.text))

    def _consume_separator(self) -> None:
        # Fields may be separated by ";" or "," (TextFormat accepts both).
        if not self.try_consume(";"):
            self.try_consume(",")

    def _skip_scalar(self) -> None:
        tok = self.peek()
        if tok.kind == "string":
            while self.peek().kind == "string":   # adjacent strings concatenate
                self.i += 1
            return
        if tok.kind in ("ident", "number"):    # "-1", "-inf" are single number tokens
            self.i += 1
            return
        raise self._unexpected("a value")

    # -- skipping unknown fields (as protobuf's SkipField does) ---------------
    def _skip_unknown_value(self) -> None:
        if self.try_consume(":"):
            tok = self.peek()
            if tok.kind == "symbol" and tok.text in _CLOSE:
                self._walk_message_value(None)
            else:
                self._skip_unknown_scalar_or_list()
        else:
            self._walk_message_value(None)

    def _skip_unknown_scalar_or_list(self) -> None:
        if not self.try_consume("["):
            self._skip_scalar()
            return
        if self.try_consume("]"):
            return
        while True:
            tok = self.peek()
            if tok.kind == "symbol" and tok.text in _CLOSE:
                self._walk_message_value(None)
            else:
                self._skip_scalar()
            if self.try_consume("]"):
                return
            self.expect(",", "or \"]\" in a list")


# ---------------------------------------------------------------------------
# Public parsing API
# ---------------------------------------------------------------------------

def _enum_number_known(enum_desc, text: str) -> bool:
    try:
        return int(text, 0) in enum_desc.values_by_number
    except ValueError:
        return False


def _blank(text: str, spans: list) -> str:
    """Replaces each [start, end) span by spaces, keeping line breaks."""
    if not spans:
        return text
    chars = list(text)
    for start, end in spans:
        for k in range(start, end):
            if chars[k] not in "\r\n":
                chars[k] = " "
    return "".join(chars)


_PARSE_ERROR_PREFIX = re.compile(r"^\d+(?::\d+)? : ")


def _converted_error(exc: text_format.ParseError, text: str, cleaned: str,
                     path: Optional[str]) -> PrototxtError:
    """A text_format error as a PrototxtError quoting the ORIGINAL line (text_format
    quotes the line it saw, in which unknown fields are blanked)."""
    reason = _PARSE_ERROR_PREFIX.sub("", str(exc))
    line = exc.GetLine()
    if line is not None and 0 < line <= cleaned.count("\n") + 1:
        seen = cleaned.split("\n")[line - 1]
        echo = f"'{seen}': "
        if reason.startswith(echo):
            original = text.split("\n")[line - 1].strip()
            reason = f"{reason[len(echo):]} (in: {original})"
    return PrototxtError(reason, path, line, exc.GetColumn())


def _unknown_field_messages(unknown: list, tokens: _Tokens) -> list:
    """One message per distinct (message type, field name), in order of first use."""
    groups: dict = {}
    for u in unknown:
        groups.setdefault((u.message_type, u.name, u.enum_value), []).append(u)
    where = tokens.path or "<string>"
    out = []
    for (mtype, name, enum_value), uses in groups.items():
        line, col = tokens.line_col(uses[0].start)
        if enum_value is None:
            msg = (f'{where}:{line}:{col}: unknown field "{name}" in {mtype} skipped with its '
                   f"value (not in BVLC caffe.proto; a Caffe fork's field?)")
        else:
            msg = (f'{where}:{line}:{col}: unknown value {enum_value} of field "{name}" in '
                   f"{mtype}: the field is skipped (a Caffe fork's enum value?)")
        if len(uses) > 1:
            lines = [tokens.line_col(u.start)[0] for u in uses]
            shown = ", ".join(str(x) for x in lines[:10]) + (", ..." if len(lines) > 10 else "")
            msg += f"; {len(uses)} occurrences, lines {shown}"
        out.append(msg)
    return out


def parse_text_detailed(text: str, message: Message, path: Optional[str] = None,
                        strict: bool = False, *, _stacklevel: int = 2) -> ParsedText:
    """Parses ``text`` into ``message`` (merging into it) and reports what was found.

    Raises :class:`PrototxtError` (with path, line, column) on a syntax error, an
    unknown enum value, a non-repeated field given twice, or (``strict=True``) an
    unknown field. Unknown fields are otherwise skipped and each distinct one is
    issued once as an :class:`UnknownFieldWarning`.
    """
    if isinstance(message, type):
        message = message()
    tokens = _Tokens(text, path)
    walker = _Walker(tokens, strict)
    walker.walk_top(message.DESCRIPTOR)
    cleaned = _blank(text, [(u.start, u.end) for u in walker.unknown + walker.skipped])
    try:
        text_format.Parse(cleaned, message)
    except text_format.ParseError as exc:
        raise _converted_error(exc, text, cleaned, path) from None
    messages = _unknown_field_messages(walker.unknown, tokens)
    for msg in messages:    # stacklevel: point at the caller of the public function
        warnings.warn(msg, UnknownFieldWarning, stacklevel=_stacklevel)
    return ParsedText(message, path, walker.top_level, messages)


def parse_text(text: str, message: Message, path: Optional[str] = None,
               strict: bool = False) -> Message:
    """Parses prototxt ``text`` into ``message`` (an instance or a message class).

    >>> parse_text("base_lr: 0.01; type: 'Adam'", caffe_pb2.SolverParameter).type
    'Adam'
    """
    return parse_text_detailed(text, message, path, strict, _stacklevel=3).message


def _decode(data: bytes, path: Optional[str]) -> str:
    if b"\x00" in data:
        raise PrototxtError("this is a binary file (e.g. a .caffemodel or .binaryproto), "
                            "not a text prototxt", path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Comments in other encodings (GBK, Latin-1) must not stop the parse.
        return data.decode("latin-1")


def _looks_like_text(value: str) -> bool:
    return "\n" in value or "{" in value or ":" in value.replace(":\\", "").replace(":/", "")


def load_text_source(path_or_text: PathOrText) -> tuple[str, Optional[str]]:
    """Returns ``(text, path)``: reads a file, or takes a string that is prototxt text.

    A string naming an existing file is read; a string that looks like prototxt
    (has a newline, ``{`` or ``:``) is taken as the text itself (``path`` None);
    anything else raises ``FileNotFoundError``.
    """
    if isinstance(path_or_text, os.PathLike) or (
            isinstance(path_or_text, str) and (os.path.isfile(path_or_text)
                                               or not _looks_like_text(path_or_text))):
        path = os.fspath(path_or_text)
        with open(path, "rb") as fh:
            return _decode(fh.read(), path), path
    if isinstance(path_or_text, bytes):
        return _decode(path_or_text, None), None
    return path_or_text, None


def parse_net(path_or_text: PathOrText, strict: bool = False, *,
              _stacklevel: int = 3) -> ParsedText:
    """Parses a net prototxt WITHOUT upgrading it (what Caffe's ReadProtoFromTextFile does)."""
    text, path = load_text_source(path_or_text)
    return parse_text_detailed(text, caffe_pb2.NetParameter(), path, strict,
                               _stacklevel=_stacklevel)


def net_layer_origins(parsed: ParsedText) -> LayerOrigins:
    """Source lines of a parsed net's ``layers``/``layer`` entries and first ``input``,
    ready for :func:`~caffe_compat.formats.upgrade.upgrade_net_as_needed`."""
    top = parsed.top_level
    return LayerOrigins(layers=[line for name, line in top if name == "layers"],
                        layer=[line for name, line in top if name == "layer"],
                        input=next((line for name, line in top if name == "input"), None))


def read_net(path_or_text: PathOrText, strict: bool = False) -> NetDefinition:
    """Reads a net prototxt (file path or text) and upgrades it to the V2 format.

    Does what Caffe's ``ReadNetParamsFromTextFileOrDie`` does (parse, then
    ``UpgradeNetAsNeeded``: V0->V1, data transform fields, V1->V2, ``input`` fields
    -> ``Input`` layer, old BatchNorm params), keeping every layer's source line.

    >>> net = read_net('input: "data"\\ninput_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8')
    >>> net.param.layer[0].name, net.param.layer[0].type, net.layer_lines
    ('input', 'Input', [1])
    """
    parsed = parse_net(path_or_text, strict, _stacklevel=4)
    param, path = parsed.message, parsed.path
    origins = net_layer_origins(parsed)
    notes = list(parsed.warnings)
    where = path or "<string>"

    def report(message: str, line: Optional[int]) -> None:
        text = f"{where}:{line}: {message}" if line else f"{where}: {message}"
        notes.append(text)
        warnings.warn(text, UpgradeWarning, stacklevel=4)

    try:
        steps = upgrade_net_as_needed(param, origins=origins, report=report)
    except NetUpgradeError as exc:
        raise PrototxtError(exc.reason, path, exc.origin) from None
    lines = (list(origins.layer) + [None] * len(param.layer))[:len(param.layer)]
    return NetDefinition(param=param, path=path, layer_lines=lines, warnings=notes,
                         upgrades=steps)


def read_label_map(path_or_text: PathOrText, strict: bool = False) -> caffe_pb2.LabelMap:
    """Reads an SSD label map (``labelmap_voc.prototxt``: ``item { name label
    display_name }``), the class names of a DetectionOutput's labels.

    >>> m = read_label_map('item { name: "none_of_the_above" label: 0 } '
    ...                    'item { name: "aeroplane" label: 1 display_name: "aeroplane" }')
    >>> {i.label: i.display_name or i.name for i in m.item}
    {0: 'none_of_the_above', 1: 'aeroplane'}
    """
    text, path = load_text_source(path_or_text)
    return parse_text_detailed(text, caffe_pb2.LabelMap(), path, strict, _stacklevel=3).message


# ---------------------------------------------------------------------------
# Writing (protobuf C++ TextFormat::Print layout, as Caffe's WriteProtoToTextFile)
# ---------------------------------------------------------------------------

def _format_float(value: float, single: bool) -> str:
    # protobuf's SimpleFtoa / SimpleDtoa: shortest of %.6g / %.9g (%.15g / %.17g)
    # that reads back to the same value.
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if single:
        text = "%.6g" % value
        if np.float32(float(text)) != np.float32(value):
            text = "%.9g" % value
        return text
    text = "%.15g" % value
    if float(text) != value:
        text = "%.17g" % value
    return text


def _format_value(fdesc, value) -> str:
    if fdesc.cpp_type == fdesc.CPPTYPE_ENUM:
        enum_value = fdesc.enum_type.values_by_number.get(value)
        return enum_value.name if enum_value is not None else str(value)
    if fdesc.cpp_type == fdesc.CPPTYPE_STRING:
        raw = value if isinstance(value, bytes) else value.encode("utf-8")
        return '"' + text_encoding.CEscape(raw, False) + '"'
    if fdesc.cpp_type == fdesc.CPPTYPE_BOOL:
        return "true" if value else "false"
    if fdesc.cpp_type == fdesc.CPPTYPE_FLOAT:
        return _format_float(value, single=True)
    if fdesc.cpp_type == fdesc.CPPTYPE_DOUBLE:
        return _format_float(value, single=False)
    return str(value)


def _print_message(message: Message, indent: int, out: list) -> None:
    pad = " " * indent
    for fdesc, value in message.ListFields():       # ordered by field number, as in C++
        values = value if fdesc.is_repeated else [value]
        for item in values:
            if fdesc.cpp_type == fdesc.CPPTYPE_MESSAGE:
                out.append(f"{pad}{fdesc.name} {{\n")
                _print_message(item, indent + 2, out)
                out.append(f"{pad}}}\n")
            else:
                out.append(f"{pad}{fdesc.name}: {_format_value(fdesc, item)}\n")


def format_text(message: Message) -> str:
    """The text Caffe's ``WriteProtoToTextFile`` writes for ``message``.

    >>> format_text(caffe_pb2.ParamSpec(lr_mult=1, decay_mult=0.1))
    'lr_mult: 1\\ndecay_mult: 0.1\\n'
    """
    out: list = []
    _print_message(message, 0, out)
    return "".join(out)


def write_text(message: Message, path: str) -> None:
    """Writes any message as a prototxt file (Caffe's layout and number format)."""
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(format_text(message))


def write_net(net_param: caffe_pb2.NetParameter, path: str) -> None:
    """Writes a NetParameter as a prototxt, as Caffe's ``WriteProtoToTextFile`` does."""
    write_text(net_param, path)
