"""The frame codec on CPython: byte-exact layout, every rejection, junk and split frames.

The same file runs on the node; test_codec_micropython.py checks the two agree.
"""

import base64
import binascii
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ribat import codec


def frames_in(stream: bytes, max_body: int = 1024) -> tuple[list[codec.Frame], list[int]]:
    """Feed a byte stream to a Deframer; the frames decoded and the causes rejected."""
    d = codec.Deframer(max_body)
    frames, rejected = [], []
    for b in stream:
        got = d.push(b)
        if got == -2:
            try:
                frames.append(codec.decode(bytes(d.line())))
            except codec.FrameError as e:
                rejected.append(e.cause)
        elif got >= 0:
            rejected.append(got)
    return frames, rejected


def body_of(line: bytes) -> bytes:
    assert line[0] == codec.MARK and line.endswith(b"\n")
    return base64.b64decode(line[1:-1])


def test_layout_is_byte_exact() -> None:
    line = codec.encode(codec.REQUEST, 0x1234, {"op": "ping"}, b"\x00\x01")
    body = body_of(line)
    meta = b'{"op":"ping"}'
    assert body[:6] == struct.pack("<BBHH", 1, codec.REQUEST, 0x1234, len(meta))
    assert body[6 : 6 + len(meta)] == meta
    assert body[6 + len(meta) : -4] == b"\x00\x01"
    assert body[-4:] == struct.pack("<I", binascii.crc32(body[:-4]))
    assert b"\x03" not in line and b"\x01" not in line and b"\x04" not in line


def test_round_trip() -> None:
    line = codec.encode(codec.EVENT, 65535, {"event": "telemetry", "x": [1, 2]}, b"data")
    frame = codec.decode(line[1:-1])
    assert (frame.version, frame.kind, frame.seq) == (codec.VERSION, codec.EVENT, 65535)
    assert frame.meta == {"event": "telemetry", "x": [1, 2]}
    assert frame.data == b"data"


def test_every_single_byte_corruption_is_rejected() -> None:
    body = bytearray(body_of(codec.encode(codec.REQUEST, 7, {"op": "config.get"})))
    for i in range(len(body)):
        damaged = bytearray(body)
        damaged[i] ^= 0x40
        with pytest.raises(codec.FrameError) as e:
            codec.decode(base64.b64encode(bytes(damaged)))
        assert codec.CAUSES[e.value.cause] in ("crc", "header", "meta")


def test_crc_error_keeps_the_sequence_number_for_an_error_response() -> None:
    body = bytearray(body_of(codec.encode(codec.REQUEST, 4321, {"op": "ping"})))
    body[-1] ^= 1
    with pytest.raises(codec.FrameError) as e:
        codec.decode(base64.b64encode(bytes(body)))
    assert (e.value.cause, e.value.seq) == (codec.CRC, 4321)


@pytest.mark.parametrize(
    "text, cause",
    [
        (b"not base64!", codec.ENCODING),
        (base64.b64encode(b"short"), codec.HEADER),
    ],
)
def test_malformed_lines(text: bytes, cause: int) -> None:
    with pytest.raises(codec.FrameError) as e:
        codec.decode(text)
    assert e.value.cause == cause


def _forge(version: int, meta: bytes, mlen: int | None = None) -> bytes:
    body = struct.pack("<BBHH", version, codec.REQUEST, 9, len(meta) if mlen is None else mlen)
    body += meta
    return base64.b64encode(body + struct.pack("<I", binascii.crc32(body)))


def test_meta_must_be_a_json_object() -> None:
    for meta in (b"[1,2]", b"{broken", b'"text"'):
        with pytest.raises(codec.FrameError) as e:
            codec.decode(_forge(codec.VERSION, meta))
        assert (e.value.cause, e.value.seq) == (codec.META, 9)


def test_meta_length_past_the_body_is_a_header_error() -> None:
    with pytest.raises(codec.FrameError) as e:
        codec.decode(_forge(codec.VERSION, b"{}", mlen=500))
    assert e.value.cause == codec.HEADER


def test_another_version_keeps_version_kind_and_seq_only() -> None:
    frame = codec.decode(_forge(codec.VERSION + 1, b"anything: not parsed"))
    assert (frame.version, frame.kind, frame.seq, frame.meta) == (
        codec.VERSION + 1,
        codec.REQUEST,
        9,
        None,
    )


def test_junk_between_frames_and_cooked_line_ends() -> None:
    a = codec.encode(codec.REQUEST, 1, {"op": "a"})
    b = codec.encode(codec.REQUEST, 2, {"op": "b"})
    stream = b">>> print('hi')\r\nhi\r\n" + a[:-1] + b"\r\n" + b"Traceback...\n" + b
    frames, rejected = frames_in(stream)
    assert [f.meta for f in frames] == [{"op": "a"}, {"op": "b"}]
    assert rejected == []


def test_a_frame_cut_by_a_new_one_is_counted_truncated() -> None:
    a = codec.encode(codec.REQUEST, 1, {"op": "a"})
    b = codec.encode(codec.REQUEST, 2, {"op": "b"})
    frames, rejected = frames_in(a[:10] + b)
    assert [f.seq for f in frames] == [2]
    assert rejected == [codec.TRUNCATED]


def test_oversize_line_is_skipped_to_its_end_and_the_next_frame_survives() -> None:
    big = codec.encode(codec.REQUEST, 1, {"op": "x", "pad": "y" * 3000})
    small = codec.encode(codec.REQUEST, 2, {"op": "ping"})
    frames, rejected = frames_in(big + small, max_body=1024)
    assert rejected == [codec.OVERSIZE]
    assert [f.seq for f in frames] == [2]


def test_a_frame_of_exactly_the_maximum_body_is_accepted() -> None:
    meta = {"op": "x", "pad": ""}
    overhead = len(body_of(codec.encode(codec.REQUEST, 1, meta)))
    meta["pad"] = "z" * (1024 - overhead)
    line = codec.encode(codec.REQUEST, 1, meta)
    assert len(body_of(line)) == 1024
    frames, rejected = frames_in(line, max_body=1024)
    assert len(frames) == 1 and rejected == []


@given(
    junk=st.lists(
        st.binary(max_size=64).map(lambda b: b.replace(b"\x1e", b"")), min_size=3, max_size=3
    ),
    seqs=st.lists(st.integers(0, 65535), min_size=2, max_size=2),
    data=st.binary(max_size=200),
)
def test_frames_survive_any_junk_around_them(
    junk: list[bytes], seqs: list[int], data: bytes
) -> None:
    lines = [codec.encode(codec.RESPONSE, s, {"n": s}, data) for s in seqs]
    # Junk ending without a newline would run into the next marker harmlessly; junk is
    # dropped outside frames, so only what follows a marker can hurt: nothing here does.
    stream = junk[0] + lines[0] + junk[1] + lines[1] + junk[2]
    frames, _ = frames_in(stream)
    assert [(f.seq, f.data) for f in frames] == [(s, data) for s in seqs]


@given(st.binary(max_size=2000))
def test_random_bytes_never_raise_anything_but_rejections(stream: bytes) -> None:
    frames_in(stream)  # FrameError is caught inside; anything else fails the test


@given(st.integers(0, 200))
def test_a_frame_split_anywhere_reassembles(cut: int) -> None:
    line = codec.encode(codec.REQUEST, 77, {"op": "config.set", "set": {"node.name": "x"}})
    cut = min(cut, len(line))
    d = codec.Deframer(1024)
    got = [d.push(b) for b in line[:cut]] + [d.push(b) for b in line[cut:]]
    assert got.count(-2) == 1 and got[-1] == -2
    assert codec.decode(bytes(d.line())).seq == 77
