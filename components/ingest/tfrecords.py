"""Rows of TFRecord files of `tf.train.Example`, read without TensorFlow.

A TFRecord is framed as: length (8 bytes, little endian), its masked CRC32C (4 bytes),
the data, the data's masked CRC32C; `components/shared/shards.py` writes the same framing.
Both checksums are verified, so a truncated or damaged file keeps the records before the
damage and the reader raises `ValueError` naming the byte offset (reported as a corrupt
file). The record is parsed with protobuf's own parser against a copy of TensorFlow's
`example.proto` messages built here (importing TensorFlow costs seconds per worker).

A row maps each feature to its value: the one value of a single-valued feature (bytes,
int or float), `None` for an empty one, and a list for several values (which cleaning
keeps out of `meta`, as JSONL's arrays). A record that is not an Example is `None`.
"""

from __future__ import annotations

import functools
import struct

from components.shared.shards import masked_crc32c

_HEADER = 12  # the length and its checksum
_FOOTER = 4


def records(stream):
    """The checked records of a TFRecord stream.

    Raises:
        ValueError: a truncated record or a checksum mismatch (at the record's offset).
    """
    offset = 0
    while True:
        header = stream.read(_HEADER)
        if not header:
            return
        if len(header) < _HEADER:
            raise ValueError(f"truncated record header at byte {offset}")
        length_bytes, length_crc = header[:8], struct.unpack("<I", header[8:])[0]
        if masked_crc32c(length_bytes) != length_crc:
            raise ValueError(f"corrupt record length at byte {offset} (checksum mismatch)")
        length = struct.unpack("<Q", length_bytes)[0]
        data = stream.read(length)
        footer = stream.read(_FOOTER)
        if len(data) < length or len(footer) < _FOOTER:
            raise ValueError(f"truncated record at byte {offset}")
        if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
            raise ValueError(f"corrupt record at byte {offset} (checksum mismatch)")
        yield data
        offset += _HEADER + length + _FOOTER


def example_rows(stream):
    """The rows of a TFRecord stream of `tf.train.Example` (`None` for a record that
    does not parse as one)."""
    for data in records(stream):
        yield example_row(data)


def example_row(data: bytes) -> dict | None:
    """One serialized `tf.train.Example` -> feature name -> value, or None."""
    from google.protobuf.message import DecodeError

    example = _example_class()()
    try:
        example.ParseFromString(data)
    except DecodeError:
        return None
    row = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        row[name] = values[0] if len(values) == 1 else (values or None)
    return row


def example_features(stream) -> list[str]:
    """The feature names of a TFRecord stream's first Example (none when it is empty or
    its first record is not an Example)."""
    for data in records(stream):
        return sorted(example_row(data) or {})
    return []


@functools.cache
def _example_class():
    """The `tf.train.Example` message class, from a copy of its definition
    (tensorflow/core/example/{example,feature}.proto) in a pool of its own."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="lmpipe/tf_example.proto",
                                               package="tensorflow", syntax="proto3")

    def message(name, *fields, oneof=None):
        described = proto.message_type.add(name=name)
        if oneof:
            described.oneof_decl.add(name=oneof)
        for number, (field_name, kind, label, type_name) in enumerate(fields, 1):
            added = described.field.add(name=field_name, number=number, type=kind, label=label,
                                        type_name=type_name)
            if oneof:
                added.oneof_index = 0
        return described

    repeated, optional = field.LABEL_REPEATED, field.LABEL_OPTIONAL
    message("BytesList", ("value", field.TYPE_BYTES, repeated, None))
    message("FloatList", ("value", field.TYPE_FLOAT, repeated, None))
    message("Int64List", ("value", field.TYPE_INT64, repeated, None))
    message("Feature", ("bytes_list", field.TYPE_MESSAGE, optional, ".tensorflow.BytesList"),
            ("float_list", field.TYPE_MESSAGE, optional, ".tensorflow.FloatList"),
            ("int64_list", field.TYPE_MESSAGE, optional, ".tensorflow.Int64List"), oneof="kind")
    features = message("Features", ("feature", field.TYPE_MESSAGE, repeated,
                                    ".tensorflow.Features.FeatureEntry"))
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=optional)
    entry.field.add(name="value", number=2, type=field.TYPE_MESSAGE, label=optional,
                    type_name=".tensorflow.Feature")
    message("Example", ("features", field.TYPE_MESSAGE, optional, ".tensorflow.Features"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))
