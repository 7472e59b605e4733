"""Demo backend behind certgate: echoes the identity headers it received as JSON."""
import os
import signal
import sys

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/", defaults={"path": ""})
@app.route("/<path:path>")
def echo(path):
    return jsonify(
        app="flask",
        path=request.path,
        ssl_client_s_dn=request.headers.get("X-SSL-Client-S-DN"),
        ssl_client_verify=request.headers.get("X-SSL-Client-Verify"),
    )


if __name__ == "__main__":
    # PID 1 in a container gets no default SIGTERM action: exit on it explicitly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app.run(host=os.environ.get("HOST", "0.0.0.0"), port=int(os.environ.get("PORT", "5000")))
