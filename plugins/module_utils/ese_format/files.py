# -*- coding: utf-8 -*-
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Safe file access for the verifier: what it opens is a regular file, and JSON it reads is bounded.

A backup share is input that someone else may have written. The verifier therefore:

- looks at every entry with ``lstat`` first and opens only regular files (never a FIFO, socket or
  device, which could block or have side effects), with ``O_NONBLOCK`` and ``O_NOFOLLOW`` so that a
  swap between the ``lstat`` and the ``open`` cannot make it block or follow a link;
- lists a folder with ``inventory``, which reports symbolic links (to files or folders) and
  non-regular entries instead of following them;
- reads JSON documents (``manifest.json``, ``kept-logs.json``) only up to ``JSON_MAX_BYTES`` and
  ``JSON_MAX_DEPTH`` levels of nesting, so that a hostile document cannot exhaust memory or the stack.
"""
from __future__ import annotations

import errno
import json
import os
import re
import stat

JSON_MAX_BYTES = 16 << 20
JSON_MAX_DEPTH = 64

_O_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


class NotRegularFile(OSError):
    """Raised instead of opening something that is not a regular file (``kind`` says what it is)."""

    def __init__(self, path, kind):
        OSError.__init__(self, errno.EINVAL, "not a regular file (%s)" % kind, path)
        self.kind = kind


class JsonLimitError(ValueError):
    """A JSON document larger or deeper than the limits."""


def kind_of(st_mode):
    """``file``, ``dir``, ``symlink``, ``fifo``, ``socket``, ``char_device``, ``block_device`` or ``other``."""
    if stat.S_ISREG(st_mode):
        return "file"
    if stat.S_ISDIR(st_mode):
        return "dir"
    if stat.S_ISLNK(st_mode):
        return "symlink"
    if stat.S_ISFIFO(st_mode):
        return "fifo"
    if stat.S_ISSOCK(st_mode):
        return "socket"
    if stat.S_ISCHR(st_mode):
        return "char_device"
    if stat.S_ISBLK(st_mode):
        return "block_device"
    return "other"


def lkind(path):
    """The kind of ``path`` itself (a link is ``symlink``), or None when it does not exist."""
    try:
        return kind_of(os.lstat(path).st_mode)
    except OSError:
        return None


def open_regular(path, follow=False):
    """Open ``path`` for reading in binary mode, only if it is a regular file.

    ``follow=False`` (the default, for files inside a set or folder) refuses a symbolic link as the
    last component; ``follow=True`` is for the path the operator named. A FIFO, socket or device is
    never opened: ``lstat``/``stat`` is looked at first, and the open itself is non-blocking.
    Raises ``NotRegularFile`` or ``OSError``.
    """
    st = os.stat(path) if follow else os.lstat(path)
    k = kind_of(st.st_mode)
    if k != "file":
        raise NotRegularFile(path, k)
    flags = _O_FLAGS if not follow else (_O_FLAGS & ~getattr(os, "O_NOFOLLOW", 0))
    fd = os.open(path, flags)
    try:
        st2 = os.fstat(fd)
        if not stat.S_ISREG(st2.st_mode):
            raise NotRegularFile(path, kind_of(st2.st_mode))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except Exception:
        os.close(fd)
        raise


def size_of(path, follow=False):
    st = os.stat(path) if follow else os.lstat(path)
    return st.st_size


def inventory(root, recursive=True):
    """Everything under ``root`` without following links: ``(files, oddities)``.

    ``files``: sorted '/'-separated names of regular files. ``oddities``: sorted list of
    ``(name, kind, detail)`` for symbolic links (kind ``symlink``, or ``dir_symlink`` when it points
    at a folder; never followed) and for entries that are neither regular files nor folders. Folders
    are descended only when they are real folders, and only with ``recursive``.
    """
    files, odd = [], []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        full_dir = os.path.join(root, *rel_dir.split("/")) if rel_dir else root
        try:
            entries = sorted(os.scandir(full_dir), key=lambda e: e.name)
        except OSError as e:
            odd.append((rel_dir or ".", "unreadable", str(e)))
            continue
        for e in entries:
            rel = rel_dir + "/" + e.name if rel_dir else e.name
            try:
                k = kind_of(e.stat(follow_symlinks=False).st_mode)
            except OSError as ex:
                odd.append((rel, "unreadable", str(ex)))
                continue
            if k == "file":
                files.append(rel)
            elif k == "dir":
                if recursive:
                    stack.append(rel)
            elif k == "symlink":
                try:
                    target = os.readlink(e.path)
                except OSError:
                    target = "?"
                try:
                    tk = kind_of(os.stat(e.path).st_mode)
                except OSError:
                    tk = "missing"
                odd.append((rel, "dir_symlink" if tk == "dir" else "symlink",
                            "symbolic link to %s (%s)" % (target, tk)))
            else:
                odd.append((rel, k, "a %s, not a regular file" % k.replace("_", " ")))
    files.sort()
    odd.sort()
    return files, odd


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text):
    """Maximum nesting depth of ``[`` and ``{`` in a JSON text (strings skipped)."""
    depth = best = 0
    for m in _BRACKET.finditer(_STRING.sub("", text)):
        if m.group() in "[{":
            depth += 1
            if depth > best:
                best = depth
        else:
            depth -= 1
    return best


def load_json(path, max_bytes=None, max_depth=None):
    """Parse the JSON file at ``path`` (a regular file) within the limits.

    Raises ``JsonLimitError`` when it is larger than ``max_bytes`` or nested deeper than
    ``max_depth``; ``ValueError``/``UnicodeDecodeError`` when it is not JSON; ``OSError`` (including
    ``NotRegularFile``) when it cannot be read.
    """
    max_bytes = JSON_MAX_BYTES if max_bytes is None else max_bytes
    max_depth = JSON_MAX_DEPTH if max_depth is None else max_depth
    with open_regular(path) as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise JsonLimitError("larger than %d bytes" % max_bytes)
    text = raw.decode("utf-8")
    depth = json_depth(text)
    if depth > max_depth:
        raise JsonLimitError("nested %d levels deep, more than %d" % (depth, max_depth))
    try:
        return json.loads(text)
    except RecursionError:   # pragma: no cover - the depth check comes first
        raise JsonLimitError("nested too deep")
