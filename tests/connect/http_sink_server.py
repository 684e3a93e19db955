"""An HTTP endpoint for the http sink's test: python3 http_sink_server.py PORT OUT.

Every third request fails with 503 (nothing kept); a batch holding a record
whose value contains "poison" is refused with 400 (nothing kept); otherwise
each record's value is appended to OUT, one per line, and 200 answered."""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, out = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
count = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            count += 1
            if count % 3 == 0:
                status = 503
            else:
                records = json.loads(body)
                if any("poison" in (r.get("value") or "") for r in records):
                    status = 400
                else:
                    with open(out, "a") as f:
                        for r in records:
                            f.write(r["value"] + "\n")
                    status = 200
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
