# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one copyright header of the collection's source files: check it (default) or add it (--fix).

Every tracked Python, PowerShell, C#, C, shell and Makefile source starts with the two header lines, in the
file's comment syntax, after a shebang line (``#!powershell`` in modules) if there is one. --fix removes an
older licence line of another wording and inserts the header; it never touches anything else.
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COPYRIGHT = "Copyright: Contributors to the ese.backup collection"
LICENCE = "GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)"
COMMENT = {".py": "#", ".ps1": "#", ".psm1": "#", ".sh": "#", ".cs": "//", ".c": "//", ".h": "//"}
NAMES = {"Makefile": "#"}


def comment_of(path):
    return NAMES.get(os.path.basename(path)) or COMMENT.get(os.path.splitext(path)[1])


def sources():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    files = [name for name in out.stdout.decode().split("\0") if name and comment_of(name)]
    return sorted(name for name in files if os.path.isfile(os.path.join(ROOT, name)))


def header(mark):
    return ["%s %s" % (mark, COPYRIGHT), "%s %s" % (mark, LICENCE)]


def split_shebang(lines):
    """(lines before the header, the rest): a shebang line (for modules with the blank line after it) and
    a Python coding line."""
    n = 0
    if lines and lines[0].startswith("#!"):
        n = 2 if lines[0] == "#!powershell" and len(lines) > 1 and lines[1] == "" else 1
    if len(lines) > n and lines[n].startswith("# -*- coding:"):
        n += 1
    return lines[:n], lines[n:]


def has_header(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        lines = f.read().split("\n")
    head, rest = split_shebang(lines)
    return rest[:2] == header(comment_of(path))


def fix(path):
    full = os.path.join(ROOT, path)
    with open(full, encoding="utf-8") as f:
        lines = f.read().split("\n")
    head, rest = split_shebang(lines)
    mark = comment_of(path)

    def old_header_line(i, line):
        return i < 6 and line.startswith(mark) and ("GNU General Public License" in line or COPYRIGHT in line)
    rest = [line for i, line in enumerate(rest) if not old_header_line(i, line)]
    with open(full, "w", encoding="utf-8") as f:
        f.write("\n".join(head + header(mark) + rest))


def main(argv):
    missing = [path for path in sources() if not has_header(path)]
    if "--fix" in argv:
        for path in missing:
            fix(path)
        missing = [path for path in missing if not has_header(path)]
    sys.stdout.writelines("%s: no copyright header (run python3 tools/headers.py --fix)\n" % path for path in missing)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
