"""The codec under MicroPython, at a Pico's heap size: it agrees with CPython byte for byte,
and the deframer takes junk without allocating."""

from conftest import micropython
from ribat import codec


def test_micropython_decodes_what_cpython_encodes_and_vice_versa() -> None:
    cases: list[tuple[int, int, dict, bytes]] = [
        (codec.REQUEST, 1, {"op": "ping"}, b""),
        (codec.EVENT, 65535, {"event": "telemetry", "heap": [1, 2]}, b"\x00\xff\x03"),
        (codec.ERROR, 300, {"error": "crc", "message": "é"}, b""),
    ]
    lines = [codec.encode(*c) for c in cases]
    out = micropython(f"""
        import binascii
        from ribat import codec
        lines = {lines!r}
        cases = {cases!r}
        for line, (kind, seq, meta, data) in zip(lines, cases):
            f = codec.decode(line[1:-1])
            assert (f.kind, f.seq, f.meta, f.data) == (kind, seq, meta, data), f.meta
            print(binascii.hexlify(codec.encode(kind, seq, meta, data)).decode())
        print("OK")
    """)
    # MicroPython may order JSON keys differently: what matters is that CPython reads it.
    for hexline, (kind, seq, meta, data) in zip(out.split()[:-1], cases, strict=True):
        frame = codec.decode(bytes.fromhex(hexline)[1:-1])
        assert (frame.kind, frame.seq, frame.meta, frame.data) == (kind, seq, meta, data)


def test_deframer_takes_junk_and_frames_without_allocating() -> None:
    good = codec.encode(codec.REQUEST, 5, {"op": "hello"})
    junk = bytes(range(256)).replace(b"\x1e", b"") * 8
    stream = junk + good + b"\x1e" + b"A" * 5000 + b"\n" + good
    micropython(f"""
        import micropython
        from ribat import codec
        def feed(d, stream):
            lines = over = 0
            micropython.heap_lock()
            for i in range(len(stream)):
                r = d.push(stream[i])
                if r == -2:
                    lines += 1
                elif r == codec.OVERSIZE:
                    over += 1
            micropython.heap_unlock()
            return lines, over
        d = codec.Deframer(1024)
        assert feed(d, {stream!r}) == (2, 1)
        assert codec.decode(d.line()).meta == {{"op": "hello"}}
        print("OK")
    """)


def test_rejections_under_micropython_match_cpython() -> None:
    micropython(r"""
        from ribat import codec
        def cause(text):
            try:
                codec.decode(text)
            except codec.FrameError as e:
                return codec.CAUSES[e.cause]
        assert cause(b"not base64!") == "encoding"
        assert cause(b"c2hvcnQ=") == "header"
        line = codec.encode(codec.REQUEST, 3, {"op": "x"})
        import binascii
        body = bytearray(binascii.a2b_base64(line[1:-1]))
        body[-1] ^= 1
        assert cause(binascii.b2a_base64(bytes(body), newline=False)) == "crc"
        print("OK")
    """)


def test_files_digest_is_the_same_on_node_and_host() -> None:
    from ribat.digest import files_digest

    hashes = {"ribat/app.mpy": "ab" * 32, "hal.mpy": "cd" * 32, "board.json": "00" * 32}
    out = micropython(f"""
        from ribat.digest import files_digest
        print(files_digest({hashes!r}))
        print("OK")
    """)
    assert out.split()[0] == files_digest(hashes)


def test_the_nodes_input_path_takes_junk_without_allocating() -> None:
    # every kind of junk that completes no frame line: plain bytes and newlines, a frame
    # too long for the buffer, a frame cut short by the next, one left open at the end
    junk = bytes(b for b in range(256) if b not in (0x1E, 0x03)) * 4
    stream = junk + b"\x1e" + b"A" * 3000 + b"\n" + b"\x1eabc" + b"\x1edef"
    micropython(
        """
        import micropython
        from ribat import codec, link

        def take_all(node_link):
            micropython.heap_lock()
            more = node_link.take_input(None)
            micropython.heap_unlock()
            return more

        node_link = link.Link(1024)
        for _ in node_link._ipoll(0):  # the first hit makes ipoll's reusable tuple
            break
        assert take_all(node_link) is False  # it read to the end of the input
        rejected = dict(zip(codec.CAUSES, node_link.rejected))
        assert rejected["oversize"] == 1 and rejected["truncated"] == 1, rejected
        assert sum(node_link.rejected) == 2 and node_link.rx_ok == 0
        print("OK")
        """,
        stdin=stream,
    )


def test_the_link_takes_frames_however_its_reads_cut_them() -> None:
    """A board's USB serial is read a buffer at a time, a read padded with carriage
    returns once the input pauses (ribat.console): frames cut anywhere by the reads, with
    such padding anywhere in them and between them, come out whole and in order, the
    REPL's text around them dropped."""
    import random

    rng = random.Random(7)
    frames = [codec.encode(codec.REQUEST, seq, {"op": "x", "n": "y" * rng.randrange(900)})
              for seq in range(1, 13)]  # fmt: skip
    stream = b"".join(b">>> print(1)\r\n" * (i % 3) + f for i, f in enumerate(frames))
    reads, at = [], 0
    chunk = 512  # a board's console reads (link._CONSOLE_CHUNK)
    while at < len(stream):  # reads of 1 to 512 bytes, a third of them padded at the end
        n = rng.randrange(1, chunk + 1)
        got = stream[at : at + n]
        at += len(got)
        if rng.random() < 0.33:
            got += b"\r" * rng.randrange(1, chunk + 1 - len(got)) if len(got) < chunk else b""
        reads.append(got)
    out = micropython(
        f"""
        from ribat import codec, link

        reads = {reads!r}
        seen = []

        def read(buf):
            if not reads:
                return -1  # the end of input
            got = reads.pop(0)
            buf[: len(got)] = got
            return len(got)

        def handle(frame):
            seen.append((frame.seq, len(frame.meta["n"])))
            return {{}}, b""

        node_link = link.Link(1024)
        node_link._read = read
        node_link._chunk = bytearray({chunk})
        calls = 1
        while node_link.take_input(handle):  # a frame line a call, then the event loop's
            calls += 1
        assert calls == len(seen) + 1, (calls, len(seen))  # and one more to the end
        print(seen)
        print(sum(node_link.rejected))
        print("OK")
        """,
    )
    lines = out.splitlines()
    decoded = [codec.decode(f[1:-1]) for f in frames]
    expected = [(d.seq, len((d.meta or {})["n"])) for d in decoded]
    assert lines[-3] == repr(expected) and lines[-2] == "0"


def test_micropython_writes_in_pieces_the_line_cpython_encodes() -> None:
    # sizes about the 768-byte pieces write() encodes at a time, and a node's largest frame
    sizes = [0, 1, 761, 762, 763, 767, 768, 769, 1536, 3600]
    out = micropython(f"""
        import binascii, io
        from ribat import codec
        for n in {sizes!r}:
            data = bytes(i % 251 for i in range(n))
            s = io.BytesIO()
            codec.write(s, codec.RESPONSE, n, {{"n": n}}, memoryview(data))
            print(binascii.hexlify(s.getvalue()).decode())
        print("OK")
    """)
    for hexline, n in zip(out.split()[:-1], sizes, strict=True):
        line = bytes.fromhex(hexline)
        assert line[:1] == b"\x1e" and line[-1:] == b"\n"
        frame = codec.decode(line[1:-1])
        assert (frame.kind, frame.seq, frame.meta) == (codec.RESPONSE, n, {"n": n})
        assert frame.data == bytes(i % 251 for i in range(n))
