"""A webhook receiver for trying alerting locally: prints every notification slowburn sends.

    python3 probes/examples/webhook-receiver.py 9999
"""
import http.server
import json
import sys


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            note = json.loads(body)
            print(f"{self.path}: {note['event'].upper()} alert {note['alert_id']} step {note['step'] + 1}: {note['summary']}", flush=True)
        except (ValueError, KeyError):
            print(f"{self.path}: {body!r}", flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 9999), Receiver).serve_forever()
