# A keep-alive HTTP/1.1 server in the style of Python's http.server: it
# answers every request with the Host header it was given and prints
# "SERVED <host>" for each one. Like http.server it never reads a body it
# has no use for, and it answers an Upgrade request with 200 — the two
# server habits issue #11 items 5 and 6 exploit.
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def serve(self):
        if self.command == "POST":
            # A POST handler reads its body; for the other methods this
            # server, like http.server, reads none.
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
        host = self.headers.get("Host", "")
        print("SERVED " + host, flush=True)
        body = ("served %s\n" % host).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_OPTIONS = do_DELETE = do_TRACE = do_POST = serve

    def log_message(self, *args):
        pass


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("PORT %d" % srv.server_address[1], flush=True)
srv.serve_forever()
