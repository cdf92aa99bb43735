#!/usr/bin/env python3
"""A stand-in for the Hugging Face Hub's resolve endpoints, for kvq's hub tests.

Standard library only. Listens on 127.0.0.1 only, on a free port that it
prints on its first stdout line. It exits when its stdin closes (the test that
started it is gone) or after --lifetime seconds, whichever comes first.

Repositories (files from the fixtures under --data):
  kvq-test/tiny     config.json, tokenizer.json (synthetic), model.safetensors
                    from qwen2-tiny/tied-bf16
  kvq-test/sharded  config.json, model.safetensors.index.json and its two
                    shards from qwen2-tiny/sharded-f32 (no tokenizer.json)
  kvq-test/gated    same files as kvq-test/tiny; needs "Authorization: Bearer
                    <--token>": 401 without a token, 403 with another one
  kvq-test/no-weights  config.json only
Revisions: "main" and "v1.0" name each repository's one commit; the 40-hex
commit itself works too.

Like the Hub: GET/HEAD /{repo}/resolve/{revision}/{file} answers
  - small files: 200 with ETag = git blob SHA-1, X-Repo-Commit;
  - *.safetensors (LFS): 302 to an absolute /cdn-lfs/{sha256} URL with
    X-Linked-Etag = SHA-256, X-Linked-Size, X-Repo-Commit;
  - errors with X-Error-Code: RepoNotFound, RevisionNotFound, EntryNotFound
    (404) and GatedRepo (401/403).
Range requests get 206 with Content-Range.

Fault switches:
  --drop-after N  the first full GET of an LFS blob sends N bytes, then drops
                  the connection (the client must resume with Range);
  --corrupt       LFS blobs are served with one byte flipped.

Every request except the log's own is appended to --log as one JSON line
{"method", "path", "range", "auth"} before it is answered.
"""
import argparse
import hashlib
import http.server
import json
import os
import sys
import threading
import urllib.parse

TOKENIZER_JSON = json.dumps({
    "version": "1.0",
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
}, indent=2).encode() + b"\n"


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def load_repos(data_dir):
    tied = os.path.join(data_dir, "qwen2-tiny", "tied-bf16")
    sharded = os.path.join(data_dir, "qwen2-tiny", "sharded-f32")
    tiny_files = {
        "config.json": read(os.path.join(tied, "config.json")),
        "tokenizer.json": TOKENIZER_JSON,
        "model.safetensors": read(os.path.join(tied, "model.safetensors")),
    }
    sharded_files = {
        name: read(os.path.join(sharded, name))
        for name in ("config.json", "model.safetensors.index.json",
                     "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    }
    repos = {}
    for repo, files in (("kvq-test/tiny", tiny_files), ("kvq-test/sharded", sharded_files),
                        ("kvq-test/gated", tiny_files),
                        ("kvq-test/no-weights", {"config.json": tiny_files["config.json"]})):
        repos[repo] = {"commit": hashlib.sha1(repo.encode()).hexdigest(), "files": files}
    return repos


class State:
    def __init__(self, args):
        self.args = args
        self.repos = load_repos(args.data)
        self.blobs = {}  # sha256 -> bytes, for the CDN path
        for repo in self.repos.values():
            for name, data in repo["files"].items():
                if name.endswith(".safetensors"):
                    self.blobs[hashlib.sha256(data).hexdigest()] = data
        self.lock = threading.Lock()
        self.dropped = False

    def log(self, handler):
        if not self.args.log:
            return
        entry = {
            "method": handler.command,
            "path": handler.path,
            "range": handler.headers.get("Range", ""),
            "auth": handler.headers.get("Authorization", ""),
        }
        with self.lock, open(self.args.log, "a") as f:
            f.write(json.dumps(entry) + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kvq-test-hub"

    def log_message(self, *args):
        pass

    @property
    def state(self):
        return self.server.state

    def do_HEAD(self):
        self.handle_request(send_body=False)

    def do_GET(self):
        self.handle_request(send_body=True)

    def error(self, status, code, message):
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def handle_request(self, send_body):
        self.state.log(self)
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/cdn-lfs/"):
            return self.serve_cdn(path[len("/cdn-lfs/"):], send_body)
        parts = path.lstrip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self.error(404, "", "not found")
        repo_id = parts[0] + "/" + parts[1]
        revision = urllib.parse.unquote(parts[3])
        filename = urllib.parse.unquote("/".join(parts[4:]))
        repo = self.state.repos.get(repo_id)
        if repo is None:
            return self.error(404, "RepoNotFound", "Repository not found")
        if repo_id == "kvq-test/gated":
            auth = self.headers.get("Authorization", "")
            if not auth:
                return self.error(401, "GatedRepo", "Access to model kvq-test/gated is restricted")
            if auth != "Bearer " + self.state.args.token:
                return self.error(403, "GatedRepo", "Access to model kvq-test/gated is restricted")
        if revision not in ("main", "v1.0", repo["commit"]):
            return self.error(404, "RevisionNotFound", "Invalid rev id: " + revision)
        data = repo["files"].get(filename)
        if data is None:
            return self.error(404, "EntryNotFound", "Entry not found")
        if filename.endswith(".safetensors"):
            sha = hashlib.sha256(data).hexdigest()
            host, port = self.server.server_address[:2]
            self.send_response(302)
            self.send_header("Location", "http://%s:%d/cdn-lfs/%s" % (host, port, sha))
            self.send_header("X-Repo-Commit", repo["commit"])
            self.send_header("X-Linked-Etag", '"%s"' % sha)
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", '"%s"' % git_blob_sha1(b"version lfs " + sha.encode()))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_file(data, send_body, {
            "X-Repo-Commit": repo["commit"],
            "ETag": '"%s"' % git_blob_sha1(data),
        })

    def serve_cdn(self, sha, send_body):
        data = self.state.blobs.get(sha)
        if data is None:
            return self.error(404, "", "no such blob")
        if self.state.args.corrupt:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
        drop_after = None
        if send_body and self.state.args.drop_after is not None and "Range" not in self.headers:
            with self.state.lock:
                if not self.state.dropped:
                    self.state.dropped = True
                    drop_after = self.state.args.drop_after
        self.send_file(data, send_body, {"ETag": '"%s"' % sha}, drop_after)

    def send_file(self, data, send_body, headers, drop_after=None):
        start, end = 0, len(data)
        status = 200
        spec = self.headers.get("Range", "")
        if spec.startswith("bytes=") and "," not in spec:
            first, _, last = spec[len("bytes="):].partition("-")
            start = int(first) if first else 0
            end = int(last) + 1 if last else len(data)
            if start >= len(data) or end > len(data) or start >= end:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(data))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, len(data)))
        self.send_header("Content-Length", str(end - start))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if not send_body:
            return
        if drop_after is not None:
            self.wfile.write(data[start:start + drop_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(data[start:end])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="tests/data")
    parser.add_argument("--log", help="file that receives one JSON line per request")
    parser.add_argument("--token", default="hf_kvq_test_token")
    parser.add_argument("--drop-after", type=int)
    parser.add_argument("--corrupt", action="store_true")
    parser.add_argument("--lifetime", type=float, default=120.0)
    args = parser.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.state = State(args)
    print(server.server_address[1], flush=True)

    def exit_when_orphaned():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=exit_when_orphaned, daemon=True).start()
    threading.Timer(args.lifetime, lambda: os._exit(0)).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
