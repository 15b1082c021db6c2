"""A tiny HTTP/1.x client over a raw socket, for what real client
libraries hide: pipelining, half-close, interim 100 responses, malformed
input, and whether the server kept or closed the connection.

    c = RawConn(srv)
    c.send(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    r = c.response()            # status, headers, body
    assert c.closed_by_peer()   # the server ended the connection
"""
import re
import socket
import time

IMF_FIXDATE_RE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$")


class Response:
    def __init__(self, version, status, reason, headers, body, raw):
        self.version = version
        self.status = status
        self.reason = reason
        self.header_list = headers  # [(name, value)] as sent
        self.body = body
        self.raw = raw              # the bytes of the whole response

    def header(self, name):
        """The value of `name` (any case), repeats joined by ', '; None if absent."""
        vals = [v for k, v in self.header_list if k.lower() == name.lower()]
        return ", ".join(vals) if vals else None

    def names(self):
        return [k.lower() for k, _ in self.header_list]

    def __repr__(self):
        return f"<Response {self.status} {self.header_list} {self.body[:200]!r}>"


class RawConn:
    def __init__(self, srv_or_host, port=None, timeout=10, family=None, rcvbuf=None):
        if port is None:
            host, port = srv_or_host.host, srv_or_host.port
        else:
            host = srv_or_host
        family = family or (socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf:
            # before connect, so the advertised window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False
        self.timeout = timeout

    # ------------------------------------------------------------- writing
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def send_slowly(self, data, piece=1, delay=0.01):
        """Sends data a few bytes at a time with a pause between writes."""
        for i in range(0, len(data), piece):
            self.sock.sendall(data[i:i + piece])
            time.sleep(delay)

    def shut_wr(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        self.sock.close()

    # ------------------------------------------------------------- reading
    def _fill(self, deadline):
        if self.eof:
            return False
        self.sock.settimeout(max(0.01, deadline - time.time()))
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _need(self, cond, deadline, what):
        while not cond():
            if time.time() > deadline:
                raise TimeoutError(f"timed out waiting for {what}; have {self.buf[:300]!r}")
            try:
                if not self._fill(deadline):
                    raise EOFError(f"connection closed while waiting for {what}; have {self.buf[:300]!r}")
            except socket.timeout:
                raise TimeoutError(f"timed out waiting for {what}; have {self.buf[:300]!r}")

    def read_until(self, marker, timeout=None):
        deadline = time.time() + (timeout or self.timeout)
        self._need(lambda: marker in self.buf, deadline, repr(marker))
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n, timeout=None):
        deadline = time.time() + (timeout or self.timeout)
        self._need(lambda: len(self.buf) >= n, deadline, f"{n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_all(self, timeout=None):
        """Everything until the server closes (raises on timeout)."""
        deadline = time.time() + (timeout or self.timeout)
        while self._fill_or_timeout(deadline):
            pass
        out, self.buf = self.buf, b""
        return out

    def _fill_or_timeout(self, deadline):
        if time.time() > deadline:
            raise TimeoutError(f"server did not close; have {self.buf[:300]!r}")
        try:
            return self._fill(deadline)
        except socket.timeout:
            raise TimeoutError(f"server did not close; have {self.buf[:300]!r}")

    def head(self, timeout=None):
        """Reads a status line and headers: (version, status, reason, headers, raw)."""
        raw = self.read_until(b"\r\n\r\n", timeout)
        lines = raw[:-4].decode("latin-1").split("\r\n")
        m = re.match(r"^(HTTP/1\.[01]) (\d{3}) (.*)$", lines[0])
        assert m, f"bad status line {lines[0]!r}"
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            assert sep and name and name == name.strip(), f"bad header line {line!r}"
            headers.append((name, value.strip()))
        return m.group(1), int(m.group(2)), m.group(3), headers, raw

    def response(self, head_request=False, timeout=None, allow_interim=False):
        """Reads one whole response. Interim (1xx) responses fail the read
        unless allow_interim, which returns them like any other."""
        version, status, reason, headers, raw = self.head(timeout)
        r = Response(version, status, reason, headers, b"", raw)
        if 100 <= status < 200:
            assert allow_interim, f"unexpected interim response {raw!r}"
            return r
        te = r.header("transfer-encoding")
        cl = r.header("content-length")
        if head_request or status in (204, 304):
            body = b""
        elif te is not None:
            assert te.lower() == "chunked", te
            assert cl is None, "both Content-Length and Transfer-Encoding"
            body = b""
            while True:
                line = self.read_until(b"\r\n", timeout)
                raw += line
                size = int(line.split(b";")[0].strip(), 16)
                data = self.read_exact(size + 2, timeout)
                raw += data
                assert data.endswith(b"\r\n"), data[-10:]
                if size == 0:
                    break
                body += data[:-2]
        elif cl is not None:
            body = self.read_exact(int(cl), timeout)
            raw += body
        else:
            body = self.read_all(timeout)
            raw += body
        r.body = body
        r.raw = raw
        return r

    def closed_by_peer(self, timeout=5):
        """True when the server ends the connection (EOF or reset) within
        `timeout` with no further bytes; raises if more bytes arrive."""
        deadline = time.time() + timeout
        try:
            self._fill_or_timeout(deadline)
        except TimeoutError:
            return False
        assert self.buf == b"", f"unexpected bytes after the response: {self.buf[:300]!r}"
        return self.eof

    def quiet_for(self, seconds):
        """True when nothing arrives and the connection stays open for `seconds`."""
        try:
            self._fill(time.time() + seconds)
        except socket.timeout:
            pass
        return not self.eof and self.buf == b""

def request(method, target, headers=(), body=b"", version="HTTP/1.1", host=True):
    """Builds request bytes. `headers` is a list of (name, value)."""
    lines = [f"{method} {target} {version}"]
    if host:
        lines.append("Host: test")
    lines += [f"{k}: {v}" for k, v in headers]
    if isinstance(body, str):
        body = body.encode()
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*pieces):
    """Encodes pieces as a chunked body, with the final empty chunk."""
    out = b""
    for p in pieces:
        if isinstance(p, str):
            p = p.encode()
        out += b"%x\r\n" % len(p) + p + b"\r\n"
    return out + b"0\r\n\r\n"
