#!/usr/bin/env python3
"""A fixed-response HTTP/1.1 upstream for bench/e2e where nginx is not available (UPSTREAM=python): every request,
any method and path, is answered 200 with the same body of SIZE bytes; keep-alive; request bodies (Content-Length
or chunked) are read and dropped. PROCS processes share the port with SO_REUSEPORT.

  python3 bench/e2e/upstream.py PORT [SIZE] [PROCS]
"""
import asyncio
import ctypes
import os
import signal
import socket
import sys


def make_handler(response):
    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                clen, chunked, close = 0, False, False
                for line in head.split(b"\r\n")[1:]:
                    n, _, v = line.partition(b":")
                    n, v = n.strip().lower(), v.strip().lower()
                    if n == b"content-length":
                        clen = int(v)
                    elif n == b"transfer-encoding" and b"chunked" in v:
                        chunked = True
                    elif n == b"connection" and v == b"close":
                        close = True
                if chunked:
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        await reader.readexactly(size + 2)
                        if size == 0:
                            break
                elif clen:
                    await reader.readexactly(clen)
                writer.write(response)
                if close:
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
    return handle


def serve(port, size):
    body = (b"wafer bench upstream " * (size // 21 + 1))[:size]
    response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(4096)

    async def run():
        server = await asyncio.start_server(make_handler(response), sock=s)
        async with server:
            await server.serve_forever()
    asyncio.run(run())


def main():
    port = int(sys.argv[1])
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    procs = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    for _ in range(procs - 1):
        if os.fork() == 0:
            # die with the parent, so that stopping the one process run.sh knows stops them all
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
            serve(port, size)
            return
    serve(port, size)


if __name__ == "__main__":
    main()
