"""A local stand-in for the Hugging Face hub's file endpoints, for download tests (HF_ENDPOINT).

It answers what huggingface_hub asks: ``GET /api/models/{repo}/revision/{rev}`` (the repo's
commit and every file's size, git blob id and LFS sha256) and ``HEAD``/``GET
/{repo}/resolve/{rev}/{file}`` (``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag``, ``X-Linked-Size``,
``Content-Length``, ``Range`` -> 206), and a 404 with ``X-Error-Code: RepoNotFound`` for any other
repo. It counts the body bytes it serves per file; a file can be made to stall once a number of
its bytes are out (so a test can kill the client mid-download), or to be served corrupted.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".ckpt")
SEND_BYTES = 64 * 1024
STALL_LIMIT_S = 60.0


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()  # noqa: S324 - git's object id


class FakeHub:
    """``repos``: repo id -> {file name: bytes}. ``served[name]``: body bytes sent for that file."""

    def __init__(self, repos: dict[str, dict[str, bytes]]) -> None:
        self.repos = repos
        self.commits = {repo: hashlib.sha1(repo.encode()).hexdigest() for repo in repos}  # noqa: S324
        self.served: Counter[str] = Counter()
        self.stall_after: dict[str, int] = {}
        """File name -> bytes after which a GET stops sending and holds the connection."""
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.corrupt: set[str] = set()
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = False  # server_close() joins the handlers: no thread left behind
        self._server.hub = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake hub", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def info(self, repo: str) -> dict:
        siblings = []
        for name, data in self.repos[repo].items():
            sibling = {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)}
            if name.endswith(LFS_SUFFIXES):
                sibling["lfs"] = {
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "pointerSize": 134,
                }
            siblings.append(sibling)
        return {
            "id": repo,
            "modelId": repo,
            "sha": self.commits[repo],
            "private": False,
            "siblings": siblings,
        }

    def etag(self, repo: str, name: str) -> str:
        data = self.repos[repo][name]
        return hashlib.sha256(data).hexdigest() if name.endswith(LFS_SUFFIXES) else git_blob_id(data)


def tiny_repo_files(folder: Path) -> dict[str, bytes]:
    """Every file under a saved model folder, by its relative name."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/?]+))?(?:\?.*)?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>[^?]+)(?:\?.*)?$")
_RANGE = re.compile(r"^bytes=(\d+)-$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def end_headers(self) -> None:
        # One request per connection: a client's pooled keep-alive connection would hold a handler
        # thread (and the test's teardown) forever.
        self.send_header("Connection", "close")
        self.close_connection = True
        super().end_headers()

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        api = _API.match(self.path)
        if api:
            self._api(api["repo"], body)
            return
        resolve = _RESOLVE.match(self.path)
        if (
            resolve
            and resolve["repo"] in self.hub.repos
            and resolve["file"] in self.hub.repos[resolve["repo"]]
        ):
            self._file(resolve["repo"], resolve["file"], body)
            return
        code = "EntryNotFound" if resolve and resolve["repo"] in self.hub.repos else "RepoNotFound"
        self._error(404, code)

    def _api(self, repo: str, body: bool) -> None:
        if repo not in self.hub.repos:
            self._error(404, "RepoNotFound")
            return
        payload = json.dumps(self.hub.info(repo)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def _file(self, repo: str, name: str, body: bool) -> None:
        data = self.hub.repos[repo][name]
        if name in self.hub.corrupt:
            data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
        start = 0
        wanted = _RANGE.match(self.headers.get("Range", ""))
        if wanted:
            start = int(wanted[1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        etag = self.hub.etag(repo, name)
        self.send_header("X-Repo-Commit", self.hub.commits[repo])
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Linked-Etag", f'"{etag}"')
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if body:
            self._send(name, data, start)

    def _send(self, name: str, data: bytes, start: int) -> None:
        stall_at = self.hub.stall_after.get(name)
        offset = start
        try:
            while offset < len(data):
                end = min(len(data), offset + SEND_BYTES)
                if stall_at is not None:
                    with self.hub.lock:
                        sent = self.hub.served[name]
                    if sent >= stall_at:
                        self.hub.stalled.set()
                        self.hub.release.wait(STALL_LIMIT_S)
                        self.close_connection = True
                        return
                    end = min(end, offset + stall_at - sent)
                self.wfile.write(data[offset:end])
                with self.hub.lock:
                    self.hub.served[name] += end - offset
                offset = end
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _error(self, status: int, code: str) -> None:
        payload = json.dumps({"error": code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
