#!/usr/bin/env python
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A WinRS (WS-Management Windows Remote Shell) stand-in for a Windows host, on 127.0.0.1 only.

It speaks what pywinrm, and so ansible-core's ``winrm`` connection plugin, sends: HTTP with basic
authentication, the shell resource's transfer ``Create`` and ``Delete`` and the shell actions
``Command``, ``Send`` (stdin), ``Receive`` (stdout, stderr, exit code) and ``Signal`` (terminate,
ctrl_c). Every command runs as a local process with the stand-in's own environment (plus the
shell's ``rsp:Environment``); ``PowerShell`` / ``powershell.exe`` run as PowerShell 7 (pwsh) with
their arguments kept. Faults that pywinrm handles: a ``w:TimedOut`` fault (code 2150858793) when a
``Receive`` waits longer than the operation timeout, and ``401`` for credentials it does not know.
Test hooks: :meth:`WinRS.freeze_commands` stops the running processes (to hold them at a chosen
moment), :meth:`WinRS.kill_commands` kills them, :meth:`WinRS.drop_receive` closes the connection of
the next waiting ``Receive`` without an answer.

Every request is counted (requests, bytes in and out on the wire: request line, headers and body)
per action and per shell; ansible-core opens one shell per task and host, so a shell is a task.
Receives answered with the timeout fault are counted as the action ``Receive:TimedOut``.
:meth:`WinRS.stats` returns the counts; the command line writes them to a JSON file.

In a test::

    with WinRS(users={"ansible": "secret"}, pwsh=require_pwsh(), lifetime=600) as winrs:
        ...  # ansible_host 127.0.0.1, ansible_port winrs.port
        winrs.stats()

From a shell (the port is printed; it stops after --lifetime seconds)::

    tests/sim/winrs.py --user ansible --password secret --stats build/winrs-stats.json

See tests/sim/README.md ("WinRS stand-in") for what it models and what only a real Windows host has.
"""
import argparse
import base64
import copy
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
ACTIONS = {
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create": "Create",
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete": "Delete",
    SHELL_URI + "/Command": "Command",
    SHELL_URI + "/Send": "Send",
    SHELL_URI + "/Receive": "Receive",
    SHELL_URI + "/Signal": "Signal",
}
RESPONSE_ACTIONS = {
    "Create": "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
    "Delete": "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse",
    "Command": SHELL_URI + "/CommandResponse",
    "Send": SHELL_URI + "/SendResponse",
    "Receive": SHELL_URI + "/ReceiveResponse",
    "Signal": SHELL_URI + "/SignalResponse",
}
SIGNAL_TERMINATE = SHELL_URI + "/signal/terminate"
SIGNAL_CTRL_C = SHELL_URI + "/signal/ctrl_c"
# WSManFault codes (the values a Windows host sends; pywinrm maps 2150858793 to WinRMOperationTimeoutError).
FAULT_TIMED_OUT = 2150858793
FAULT_INVALID_SELECTORS = 2150858843
FAULT_ACTION_NOT_SUPPORTED = 2150858754
FAULT_INVALID_COMMAND = 2150858882
POWERSHELL_NAMES = ("powershell", "powershell.exe", "pwsh", "pwsh.exe")
DEFAULT_MAX_ENVELOPE = 153600


def _duration_seconds(text, default):
    """Seconds of an xs:duration such as PT20S or PT1.5S (what pywinrm sends as w:OperationTimeout)."""
    m = re.match(r"^P(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?$", (text or "").strip())
    if not m or not any(m.groups()):
        return default
    h, mi, s = m.groups()
    return int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)


def _short_line(line):
    """The WinRS command line as received, with the -EncodedCommand value shortened."""
    words = (line.findtext("rsp:Command", "", NS) + " " + (line.findtext("rsp:Arguments", "", NS) or "")).split()
    return " ".join(w if len(w) <= 64 else w[:8] + "...(%d chars)" % len(w) for w in words)


class _Counter:
    """Wraps a connection's rfile/wfile and counts the bytes that pass."""

    def __init__(self, f):
        self._f = f
        self.count = 0

    def read(self, *a):
        data = self._f.read(*a)
        self.count += len(data)
        return data

    def readline(self, *a):
        data = self._f.readline(*a)
        self.count += len(data)
        return data

    def write(self, data):
        self.count += len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)


class Command:
    def __init__(self, shell, command_id, argv, env, cwd):
        self.shell = shell
        self.id = command_id
        self.argv = argv
        self.stdin_bytes = 0
        self.exit_code = None
        self.killed_by = None
        self.lock = threading.Condition()
        self.out = {"stdout": bytearray(), "stderr": bytearray()}
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, cwd=cwd, start_new_session=True)
        self.readers = [threading.Thread(target=self._pump, args=(name, stream), daemon=True)
                        for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr))]
        for t in self.readers:
            t.start()

    def _pump(self, name, stream):
        for chunk in iter(lambda: stream.read1(65536), b""):
            with self.lock:
                self.out[name] += chunk
                self.lock.notify_all()
        with self.lock:
            self.lock.notify_all()

    def write_stdin(self, data, end):
        self.stdin_bytes += len(data)
        try:
            if data:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            if end:
                self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass  # the process has gone; Windows drops the input too

    def done(self):
        """True once the process has exited and its output has been read to the end."""
        return self.proc.poll() is not None and not any(t.is_alive() for t in self.readers)

    def kill(self, how="terminate"):
        if self.proc.poll() is None:
            self.killed_by = how
            try:
                os.killpg(self.proc.pid, signal.SIGINT if how == "ctrl_c" else signal.SIGKILL)
            except ProcessLookupError:
                pass

    def take(self, limit):
        """Up to ``limit`` bytes of pending output, stdout first: {stream: bytes}."""
        taken = {}
        with self.lock:
            for name in ("stdout", "stderr"):
                buf = self.out[name]
                n = min(len(buf), limit)
                if n:
                    taken[name] = bytes(buf[:n])
                    del buf[:n]
                    limit -= n
        return taken

    def pending(self):
        with self.lock:
            return len(self.out["stdout"]) + len(self.out["stderr"])


class Shell:
    def __init__(self, shell_id, user, env, cwd):
        self.id = shell_id
        self.user = user
        self.env = env
        self.cwd = cwd
        self.commands = {}
        self.record = {"shell_id": shell_id, "user": user, "opened": time.time(), "closed": None,
                       "requests": 0, "bytes_in": 0, "bytes_out": 0, "actions": {}, "commands": []}


class Fault(Exception):
    def __init__(self, code, subcode, reason, wsman_code, status=500):
        super().__init__(reason)
        self.code, self.subcode, self.reason, self.wsman_code, self.status = code, subcode, reason, wsman_code, status


class Dropped(Exception):
    """The connection is closed without an answer."""


class WinRS:
    """The stand-in: ``start()`` / ``stop()`` or a ``with`` block; ``port`` once started."""

    def __init__(self, users=None, pwsh=None, env=None, cwd=None, lifetime=900, operation_timeout=None,
                 machine="winrs-standin", max_envelope=DEFAULT_MAX_ENVELOPE, stats_path=None):
        self.users = dict(users or {"ansible": "ansible"})
        self.pwsh = pwsh
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd or os.getcwd()
        self.lifetime = lifetime
        # None: the w:OperationTimeout of each request (PT20S from pywinrm), as a Windows host honours it.
        self.operation_timeout = operation_timeout
        self.machine = machine
        self.max_envelope = max_envelope
        self.stats_path = stats_path
        self.lock = threading.RLock()
        self.shells = {}
        self.closed_shells = []
        self.port = None
        self._server = None
        self._thread = None
        self._timer = None
        self._drop = threading.Event()
        self._bin = None
        self.reset_stats()

    # -- life cycle ------------------------------------------------------------------------------------
    def start(self):
        stand_in = self
        if self.pwsh:
            # Windows has powershell.exe on PATH; the exec wrapper looks 'powershell' up there.
            self._bin = tempfile.mkdtemp(prefix="winrs-bin-")
            for name in ("powershell", "powershell.exe"):
                os.symlink(self.pwsh, os.path.join(self._bin, name))
            self.env["PATH"] = self._bin + os.pathsep + self.env.get("PATH", os.defpath)

        class Handler(_Handler):
            winrs = stand_in

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self):
        if self._timer:
            self._timer.cancel()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            for shell in list(self.shells.values()):
                self._close_shell(shell)
        if self._bin:
            shutil.rmtree(self._bin, ignore_errors=True)
            self._bin = None
        self._write_stats()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d/wsman" % self.port

    # -- test hooks ------------------------------------------------------------------------------------
    def kill_commands(self):
        """Kills every running command's process group (as a host whose process dies); returns how many."""
        with self.lock:
            running = [c for s in self.shells.values() for c in s.commands.values() if c.proc.poll() is None]
        for c in running:
            c.kill("killed by the stand-in")
        return len(running)

    def freeze_commands(self):
        """Stops (SIGSTOP) every running command's process group, to hold a command at a chosen moment
        before a fault is injected; returns how many. Killing or terminating a frozen command works."""
        with self.lock:
            running = [c for s in self.shells.values() for c in s.commands.values() if c.proc.poll() is None]
        for c in running:
            try:
                os.killpg(c.proc.pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        return len(running)

    def drop_receive(self):
        """The next waiting (or next arriving) Receive has its connection closed without an answer."""
        self._drop.set()

    def running(self):
        """Commands whose process is still alive, as (shell id, command id, argv[0])."""
        with self.lock:
            return [(s.id, c.id, c.argv[0]) for s in self.shells.values() for c in s.commands.values()
                    if c.proc.poll() is None]

    def open_shells(self):
        with self.lock:
            return sorted(self.shells)

    # -- counts ----------------------------------------------------------------------------------------
    def reset_stats(self):
        with self.lock:
            self._stats = {"requests": 0, "bytes_in": 0, "bytes_out": 0, "actions": {}, "refused": 0,
                           "dropped": 0, "timeouts": 0}
            self.closed_shells = []
            for shell in self.shells.values():
                shell.record.update(requests=0, bytes_in=0, bytes_out=0, actions={})

    def stats(self):
        """{requests, bytes_in, bytes_out, actions: {action: counts}, refused, dropped, timeouts,
        shells: [per shell: user, requests, bytes, actions, commands]} (a copy)."""
        with self.lock:
            out = copy.deepcopy(self._stats)
            out["shells"] = copy.deepcopy(self.closed_shells + [s.record for s in self.shells.values()])
        out["shells"].sort(key=lambda r: r["opened"])
        return out

    def _count(self, action, shell, n_in, n_out):
        with self.lock:
            targets = [self._stats] + ([shell.record] if shell is not None else [])
            for t in targets:
                t["requests"] += 1
                t["bytes_in"] += n_in
                t["bytes_out"] += n_out
                a = t["actions"].setdefault(action, {"requests": 0, "bytes_in": 0, "bytes_out": 0})
                a["requests"] += 1
                a["bytes_in"] += n_in
                a["bytes_out"] += n_out
        if self.stats_path:
            self._write_stats()

    def _write_stats(self):
        if self.stats_path:
            tmp = self.stats_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.stats(), f, indent=1)
            os.replace(tmp, self.stats_path)

    # -- WS-Man actions --------------------------------------------------------------------------------
    def _shell(self, root):
        sel = root.find("s:Header/w:SelectorSet/w:Selector[@Name='ShellId']", NS)
        shell = self.shells.get(sel.text if sel is not None else None)
        if shell is None:
            raise Fault("s:Sender", "w:InvalidSelectors",
                        "The request for the Windows Remote Shell with ShellId %s failed because the shell was not "
                        "found on the server." % (sel.text if sel is not None else "(none)"), FAULT_INVALID_SELECTORS)
        return shell

    def create(self, root, user):
        body = root.find("s:Body/rsp:Shell", NS)
        env = dict(self.env)
        cwd = self.cwd
        if body is not None:
            for var in body.findall("rsp:Environment/rsp:Variable", NS):
                env[var.get("Name")] = var.text or ""
            wd = body.findtext("rsp:WorkingDirectory", None, NS)
            if wd and os.path.isdir(wd):
                cwd = wd
        shell = Shell(str(uuid.uuid4()).upper(), user, env, cwd)
        with self.lock:
            self.shells[shell.id] = shell
        url = self.endpoint
        body = ('<x:ResourceCreated><a:Address>%s</a:Address><a:ReferenceParameters>'
                '<w:ResourceURI>%s/cmd</w:ResourceURI><w:SelectorSet><w:Selector Name="ShellId">%s</w:Selector>'
                '</w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>'
                '<rsp:Shell><rsp:ShellId>%s</rsp:ShellId><rsp:ResourceUri>%s/cmd</rsp:ResourceUri>'
                '<rsp:Owner>%s</rsp:Owner><rsp:InputStreams>stdin</rsp:InputStreams>'
                '<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>'
                % (url, SHELL_URI, shell.id, shell.id, SHELL_URI, escape(user)))
        return shell, body

    def argv(self, command, arguments):
        """The local argv for a WinRS command line (``PowerShell`` and ``powershell.exe`` become pwsh)."""
        words = shlex.split(command, posix=False) + (arguments.split() if arguments else [])
        if not words:
            raise Fault("s:Sender", "w:InvalidParameter", "The command line is empty.", FAULT_INVALID_COMMAND)
        exe = words[0].strip('"')
        if re.split(r"[\\/]", exe)[-1].lower() in POWERSHELL_NAMES:
            if not self.pwsh:
                raise Fault("s:Receiver", "w:InternalError", "PowerShell (pwsh) is not available on this stand-in.",
                            FAULT_INVALID_COMMAND)
            words[0] = self.pwsh
        return words

    def command(self, root, shell):
        line = root.find("s:Body/rsp:CommandLine", NS)
        argv = self.argv(line.findtext("rsp:Command", "", NS), line.findtext("rsp:Arguments", "", NS))
        command_id = str(uuid.uuid4()).upper()
        try:
            cmd = Command(shell, command_id, argv, shell.env, shell.cwd)
        except OSError as e:
            raise Fault("s:Receiver", "w:InternalError", "The command could not be started: %s" % e,
                        FAULT_INVALID_COMMAND)
        with self.lock:
            shell.commands[command_id] = cmd
            shell.record["commands"].append({"command_id": command_id, "line": _short_line(line), "argv0": argv[0],
                                             "stdin_bytes": 0, "exit_code": None, "killed_by": None})
        return cmd, "<rsp:CommandResponse><rsp:CommandId>%s</rsp:CommandId></rsp:CommandResponse>" % command_id

    def _command(self, shell, command_id):
        cmd = shell.commands.get(command_id)
        if cmd is None:
            raise Fault("s:Sender", "w:InvalidParameter",
                        "The request for the Windows Remote Shell with CommandId %s failed because the command was "
                        "not found." % command_id, FAULT_INVALID_COMMAND)
        return cmd

    def _note(self, cmd):
        for rec in cmd.shell.record["commands"]:
            if rec["command_id"] == cmd.id:
                rec.update(stdin_bytes=cmd.stdin_bytes, exit_code=cmd.exit_code, killed_by=cmd.killed_by)

    def send(self, root, shell):
        stream = root.find("s:Body/rsp:Send/rsp:Stream", NS)
        cmd = self._command(shell, stream.get("CommandId"))
        data = base64.b64decode(stream.text or "")
        cmd.write_stdin(data, (stream.get("End") or "").lower() == "true")
        with self.lock:
            self._note(cmd)
        return "<rsp:SendResponse/>"

    def receive(self, root, shell, timeout):
        desired = root.find("s:Body/rsp:Receive/rsp:DesiredStream", NS)
        cmd = self._command(shell, desired.get("CommandId"))
        limit = max(1024, (self.max_envelope - 4096) * 3 // 4)
        deadline = time.monotonic() + timeout
        with cmd.lock:
            while True:
                if self._drop.is_set():
                    self._drop.clear()
                    raise Dropped()
                if cmd.done() or sum(len(b) for b in cmd.out.values()) >= limit:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                cmd.lock.wait(min(left, 0.05))
        taken = cmd.take(limit)
        finished = cmd.done() and not cmd.pending()
        if not taken and not finished:
            with self.lock:
                self._stats["timeouts"] += 1
            raise Fault("s:Receiver", "w:TimedOut",
                        "The WS-Management service cannot complete the operation within the time specified in "
                        "OperationTimeout.", FAULT_TIMED_OUT)
        parts = ["<rsp:ReceiveResponse>"]
        for name in ("stdout", "stderr"):
            if name in taken:
                parts.append('<rsp:Stream Name="%s" CommandId="%s">%s</rsp:Stream>'
                             % (name, cmd.id, base64.b64encode(taken[name]).decode("ascii")))
        if finished:
            cmd.exit_code = cmd.proc.returncode
            for name in ("stdout", "stderr"):
                parts.append('<rsp:Stream Name="%s" CommandId="%s" End="true"></rsp:Stream>' % (name, cmd.id))
            parts.append('<rsp:CommandState CommandId="%s" State="%s/CommandState/Done"><rsp:ExitCode>%d'
                         '</rsp:ExitCode></rsp:CommandState>' % (cmd.id, SHELL_URI, cmd.exit_code))
        else:
            parts.append('<rsp:CommandState CommandId="%s" State="%s/CommandState/Running"/>' % (cmd.id, SHELL_URI))
        parts.append("</rsp:ReceiveResponse>")
        with self.lock:
            self._note(cmd)
        return "".join(parts)

    def signal(self, root, shell):
        sig = root.find("s:Body/rsp:Signal", NS)
        cmd = self._command(shell, sig.get("CommandId"))
        code = sig.findtext("rsp:Code", "", NS)
        if code == SIGNAL_CTRL_C:
            cmd.kill("ctrl_c")
        elif code == SIGNAL_TERMINATE:
            cmd.kill("terminate")
            with self.lock:
                self._note(cmd)
                shell.commands.pop(cmd.id, None)
        else:
            raise Fault("s:Sender", "w:InvalidParameter", "Unknown signal %s." % code, FAULT_INVALID_COMMAND)
        return "<rsp:SignalResponse/>"

    def _close_shell(self, shell):
        for cmd in list(shell.commands.values()):
            cmd.kill("shell deleted")
            self._note(cmd)
        shell.commands.clear()
        shell.record["closed"] = time.time()
        self.shells.pop(shell.id, None)
        self.closed_shells.append(shell.record)

    def delete(self, root, shell):
        with self.lock:
            self._close_shell(shell)
        return ""


class _Handler(BaseHTTPRequestHandler):
    winrs = None  # set by WinRS.start
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""

    def setup(self):
        super().setup()
        self.rfile = _Counter(self.rfile)
        self.wfile = _Counter(self.wfile)

    def log_message(self, *args):
        pass

    def handle_one_request(self):
        in0, out0 = self.rfile.count, self.wfile.count
        self._action, self._shell = None, None
        super().handle_one_request()
        if self._action:
            self.winrs._count(self._action, self._shell, self.rfile.count - in0, self.wfile.count - out0)

    def _user(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(auth[6:]).decode("utf-8").partition(":")
        except ValueError:
            return None
        return user if self.winrs.users.get(user) == password and password != "" else None

    def _reply(self, status, body, extra=()):
        data = body.encode("utf-8")
        self.send_response(status)
        for k, v in extra:
            self.send_header(k, v)
        if data:
            self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        winrs = self.winrs
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        user = self._user()
        if user is None:
            self._action = "refused"
            with winrs.lock:
                winrs._stats["refused"] += 1
            self._reply(401, "", [("WWW-Authenticate", 'Basic realm="WSMAN"'), ("WWW-Authenticate", "Negotiate")])
            return
        message_id = "uuid:" + str(uuid.uuid4()).upper()
        try:
            root = ET.fromstring(raw)
            message_id = root.findtext("s:Header/a:MessageID", message_id, NS)
            action_uri = root.findtext("s:Header/a:Action", "", NS)
            action = ACTIONS.get(action_uri)
            self._action = action or "unsupported"
            if action is None:
                raise Fault("s:Sender", "a:ActionNotSupported", "The action %s is not supported." % action_uri,
                            FAULT_ACTION_NOT_SUPPORTED)
            if action == "Create":
                self._shell, body = winrs.create(root, user)
            else:
                self._shell = winrs._shell(root)
                if action == "Command":
                    body = winrs.command(root, self._shell)[1]
                elif action == "Send":
                    body = winrs.send(root, self._shell)
                elif action == "Receive":
                    requested = _duration_seconds(root.findtext("s:Header/w:OperationTimeout", "", NS), 60)
                    timeout = winrs.operation_timeout if winrs.operation_timeout is not None else requested
                    body = winrs.receive(root, self._shell, timeout)
                elif action == "Signal":
                    body = winrs.signal(root, self._shell)
                else:
                    body = winrs.delete(root, self._shell)
        except Dropped:
            with winrs.lock:
                winrs._stats["dropped"] += 1
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        except Fault as f:
            if f.wsman_code == FAULT_TIMED_OUT:
                self._action = "Receive:TimedOut"  # counted apart: their number depends on time, not content
            self._reply(f.status, self._fault(message_id, f))
            return
        except ET.ParseError as e:
            self._action = self._action or "malformed"
            self._reply(400, self._fault(message_id, Fault("s:Sender", "w:SchemaValidationError", str(e), 2150858817)))
            return
        self._reply(200, self._envelope(RESPONSE_ACTIONS[action], message_id, body))

    def _envelope(self, action_uri, relates_to, body):
        return ('<s:Envelope xml:lang="en-US" xmlns:s="%s" xmlns:a="%s" xmlns:x="%s" xmlns:w="%s" xmlns:rsp="%s">'
                '<s:Header><a:Action>%s</a:Action><a:MessageID>uuid:%s</a:MessageID>'
                '<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>'
                '<a:RelatesTo>%s</a:RelatesTo></s:Header><s:Body>%s</s:Body></s:Envelope>'
                % (NS["s"], NS["a"], NS["x"], NS["w"], NS["rsp"], action_uri, str(uuid.uuid4()).upper(),
                   escape(relates_to), body))

    def _fault(self, relates_to, f):
        body = ('<s:Fault><s:Code><s:Value>%s</s:Value><s:Subcode><s:Value>%s</s:Value></s:Subcode></s:Code>'
                '<s:Reason><s:Text xml:lang="en-US">%s</s:Text></s:Reason><s:Detail>'
                '<f:WSManFault xmlns:f="%s" Code="%d" Machine="%s"><f:Message>%s</f:Message></f:WSManFault>'
                '</s:Detail></s:Fault>'
                % (f.code, f.subcode, escape(f.reason), NS["f"], f.wsman_code, escape(self.winrs.machine),
                   escape(f.reason)))
        return self._envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--user", default="ansible")
    ap.add_argument("--password", default="ansible")
    ap.add_argument("--pwsh", help="PowerShell 7 for 'PowerShell' commands (default: tests/lib/pwsh.py's search)")
    ap.add_argument("--lifetime", type=float, default=900, help="seconds before it stops by itself")
    ap.add_argument("--operation-timeout", type=float, help="seconds a Receive waits (default: the client's)")
    ap.add_argument("--stats", help="JSON file rewritten after every request with the counts")
    a = ap.parse_args(argv)
    pwsh = a.pwsh
    if not pwsh:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
        from pwsh import find_pwsh
        pwsh = find_pwsh()
    winrs = WinRS(users={a.user: a.password}, pwsh=pwsh, lifetime=a.lifetime,
                  operation_timeout=a.operation_timeout, stats_path=a.stats).start()
    print(winrs.endpoint, flush=True)
    try:
        while winrs._server is not None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        winrs.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
