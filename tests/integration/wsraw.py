"""A raw-socket WebSocket client, for what real client libraries never
send: frames of any shape (unmasked, reserved bits and opcodes, bad
lengths, fragments interleaved with control frames, a byte at a time),
and for reading exactly what the server answers, down to the close code
and the TCP close after it.

    ws = WSRaw(srv, "/echo")            # handshake done, 101 checked
    ws.send_frame(OP_TEXT, b"hi")       # masked, FIN set
    assert ws.recv_message() == (OP_TEXT, b"hi")
    ws.send_frame(OP_TEXT, b"x", rsv=4)
    ws.expect_close(1002)               # the close frame, then EOF

Server frames are checked as they are read: never masked, no reserved
bits unless compression was negotiated, control frames whole and short.
"""
import base64
import hashlib
import os
import struct
import time
import zlib

from httpraw import RawConn, Response

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
RSV1, RSV2, RSV3 = 4, 2, 1  # the `rsv` argument's bits, in header order


def accept_for(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, key=None, length_form=None, length=None):
    """Frame bytes as a client sends them. `length_form` forces 7, 16 or 64
    bit lengths; `length` writes another length than the payload's."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)
    m = 0x80 if mask else 0
    form = length_form or (7 if n < 126 else 16 if n <= 0xFFFF else 64)
    if form == 7:
        head = struct.pack("!BB", b0, m | n)
    elif form == 16:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return head + payload
    key = key if key is not None else os.urandom(4)
    return head + key + mask_bytes(payload, key)


def mask_bytes(data, key):
    if not data:
        return b""
    reps = key * (len(data) // 4 + 1)
    return (int.from_bytes(data, "big") ^ int.from_bytes(reps[:len(data)], "big")).to_bytes(len(data), "big")


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


def deflate_message(data, wbits=15):
    """A message's payload compressed as permessage-deflate sends it."""
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate_message(data):
    return zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")


class Frame:
    def __init__(self, fin, rsv, opcode, payload):
        self.fin, self.rsv, self.opcode, self.payload = fin, rsv, opcode, payload

    @property
    def close_code(self):
        assert self.opcode == OP_CLOSE
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self):
        return self.payload[2:]

    def __repr__(self):
        return f"<Frame op={self.opcode:#x} fin={self.fin} rsv={self.rsv} {self.payload[:80]!r}{'...' if len(self.payload) > 80 else ''} ({len(self.payload)} bytes)>"


class HandshakeError(AssertionError):
    def __init__(self, response):
        super().__init__(f"handshake refused: {response!r}")
        self.response = response


def handshake_bytes(path="/echo", key=None, method="GET", version="13", upgrade="websocket",
                    connection="Upgrade", extensions=None, protocols=None, headers=(), omit=()):
    """The opening handshake request; any header can be changed or left out."""
    key = new_key() if key is None else key
    hs = [("Host", "test"), ("Upgrade", upgrade), ("Connection", connection),
          ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", version)]
    if extensions is not None:
        hs.append(("Sec-WebSocket-Extensions", extensions))
    if protocols is not None:
        hs.append(("Sec-WebSocket-Protocol", protocols))
    hs = [(k, v) for k, v in hs if k.lower() not in {o.lower() for o in omit} and v is not None]
    hs += list(headers)
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in hs]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class WSRaw:
    """One WebSocket connection over a raw socket. With `handshake` the
    opening handshake is made and must succeed (101, correct accept key);
    `extensions` offers permessage-deflate and friends."""

    def __init__(self, srv, path="/echo", handshake=True, timeout=10, rcvbuf=None, **hs):
        self.conn = RawConn(srv, timeout=timeout, rcvbuf=rcvbuf)
        self.timeout = timeout
        self.deflate = False
        self.response = None
        if handshake:
            self.open(path, **hs)

    # ------------------------------------------------------- handshake
    def request(self, path="/echo", **hs):
        """Sends the handshake and reads the answer's head (a Response; for
        a refusal, with its body)."""
        hs.setdefault("key", new_key())
        self.key = hs["key"]
        self.conn.send(handshake_bytes(path, **hs))
        version, status, reason, headers, raw = self.conn.head()
        r = Response(version, status, reason, headers, b"", raw)
        if status != 101:
            cl = r.header("content-length")
            if cl is not None:
                r.body = self.conn.read_exact(int(cl))
        self.response = r
        return r

    def open(self, path="/echo", **hs):
        r = self.request(path, **hs)
        if r.status != 101:
            raise HandshakeError(r)
        assert r.header("upgrade").lower() == "websocket", r
        assert "upgrade" in r.header("connection").lower(), r
        assert r.header("sec-websocket-accept") == accept_for(self.key), r
        assert r.header("content-length") is None and r.header("transfer-encoding") is None, r
        ext = r.header("sec-websocket-extensions")
        self.deflate = bool(ext and ext.startswith("permessage-deflate"))
        return r

    # ----------------------------------------------------------- writing
    def send_raw(self, data):
        self.conn.send(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.conn.send(frame(opcode, payload, **kw))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send_compressed(self, opcode, data, fragments=1):
        """A permessage-deflate message, optionally cut into fragments (RSV1
        on the first only)."""
        z = deflate_message(data)
        step = max(1, -(-len(z) // fragments))
        pieces = [z[i:i + step] for i in range(0, len(z), step)] or [b""]
        out = b""
        for i, p in enumerate(pieces):
            out += frame(opcode if i == 0 else OP_CONT, p, fin=i == len(pieces) - 1,
                         rsv=RSV1 if i == 0 else 0)
        self.conn.send(out)

    def send_close(self, code=None, reason=b""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    # ----------------------------------------------------------- reading
    def recv_frame(self, timeout=None):
        """The next server frame (checked: unmasked, valid shape)."""
        t = timeout or self.timeout
        b0, b1 = self.conn.read_exact(2, t)
        fin, rsv, opcode = b0 >> 7, (b0 >> 4) & 7, b0 & 0xF
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.conn.read_exact(2, t))[0]
            assert n >= 126, "non-minimal 16-bit length"
        elif n == 127:
            n = struct.unpack("!Q", self.conn.read_exact(8, t))[0]
            assert n > 0xFFFF and not n >> 63, "bad 64-bit length"
        payload = self.conn.read_exact(n, t) if n else b""
        assert opcode in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG), f"opcode {opcode:#x}"
        if opcode & 8:
            assert fin and n <= 125 and rsv == 0, "bad control frame from the server"
        else:
            allowed = RSV1 if self.deflate and opcode != OP_CONT else 0
            assert rsv & ~allowed == 0, f"reserved bits {rsv} on a server frame"
        return Frame(fin, rsv, opcode, payload)

    def recv_message(self, timeout=None, skip_pings=True):
        """The next data message as (opcode, bytes), fragments joined and
        inflated. Pings are skipped (not answered) unless skip_pings is off;
        a close frame raises."""
        deadline = time.time() + (timeout or self.timeout)
        parts, opcode, compressed = [], None, False
        while True:
            f = self.recv_frame(max(0.05, deadline - time.time()))
            if f.opcode in (OP_PING, OP_PONG) and skip_pings:
                continue
            if f.opcode == OP_CLOSE:
                raise AssertionError(f"close frame while waiting for a message: {f!r}")
            if opcode is None:
                assert f.opcode in (OP_TEXT, OP_BINARY), f"expected a message, got {f!r}"
                opcode, compressed = f.opcode, bool(f.rsv & RSV1)
            else:
                assert f.opcode == OP_CONT, f"expected a continuation, got {f!r}"
            parts.append(f.payload)
            if f.fin:
                data = b"".join(parts)
                return opcode, inflate_message(data) if compressed else data

    def recv_text(self, timeout=None):
        op, data = self.recv_message(timeout)
        assert op == OP_TEXT, (op, data[:100])
        return data.decode()

    def recv_close(self, timeout=None, skip_data=False):
        """Reads up to the close frame (data frames before it fail unless
        skip_data); returns the Frame."""
        deadline = time.time() + (timeout or self.timeout)
        while True:
            f = self.recv_frame(max(0.05, deadline - time.time()))
            if f.opcode == OP_CLOSE:
                return f
            if f.opcode in (OP_PING, OP_PONG) or skip_data:
                continue
            raise AssertionError(f"expected a close frame, got {f!r}")

    def expect_close(self, code, timeout=None, skip_data=False, reason=None):
        """The server's close frame carries `code`, and the server then ends
        the TCP connection. Returns the close frame."""
        f = self.recv_close(timeout, skip_data)
        assert f.close_code == code, f"close code {f.close_code}, wanted {code} ({f!r})"
        if reason is not None:
            assert f.close_reason == (reason.encode() if isinstance(reason, str) else reason), f
        assert self.closed_by_peer(timeout or 5), "the server kept the connection open after its close frame"
        return f

    def closed_by_peer(self, timeout=5):
        """The server ends the TCP connection with no more bytes (EOF or reset)."""
        return self.conn.closed_by_peer(timeout)

    def quiet_for(self, seconds):
        return self.conn.quiet_for(seconds)

    def close(self):
        self.conn.close()


