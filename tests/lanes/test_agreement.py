# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two lanes agree: the simulated host (esesim, tests/e2e's harness) and the real modules under
PowerShell 7 (tests/pwsh's lane: Ansible.Basic, Add-CSharpType and the exec wrapper for real).

Both lanes get the tables of cases.py in one playbook each (one task per row, ``ignore_errors``, rows
spread over two hosts, ``strategy: free``). For every bad input they must agree on the outcome (failed
or not) and on the options the message names, and meet the table; for every good scenario both must
succeed with the same engine facts (trace calls and errors, set contents and manifest keys, the named
result keys with the lane's paths replaced by the table's placeholders).
"""
import json
import os
import re
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
for _path in (HERE, os.path.join(REPO, "tests", "lib"), os.path.join(REPO, "tests", "e2e"),
              os.path.join(REPO, "tests", "pwsh"), os.path.join(REPO, "tests", "sim")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import cases  # noqa: E402
import payload  # noqa: E402  (tests/sim)
from simulation import SHARE, SRU_DIR, Simulation  # noqa: E402  (tests/e2e)

HOSTS = ("lane1", "lane2")
ESESIM_TMP = "C:\\lane-tmp"
VOLATILE = {"created", "ms", "seconds", "elapsed", "started", "finished", "time", "duration", "mtime"}


def _spec_options(spec):
    names = set()
    for name, meta in (spec.get("options") or {}).items():
        names.add(name)
        names.update(meta.get("aliases") or [])
        if isinstance(meta.get("options"), dict):
            names.update(_spec_options(meta))
    return names


def module_options(module):
    with open(os.path.join(REPO, "plugins", "modules", module + ".ps1"), encoding="utf-8") as f:
        return _spec_options(payload.module_spec(f.read()))


def named_options(module, args, msg):
    """The module's options (and the row's own argument names) that a message names."""
    entries = [e for v in args.values() if isinstance(v, list) for e in v if isinstance(e, dict)]
    candidates = module_options(module) | set(args) | {k for e in entries for k in e}
    return sorted(c for c in candidates if re.search(r"(?<![\w])%s(?![\w])" % re.escape(c), msg))


def render(value, paths, windows):
    if isinstance(value, dict):
        return {k: render(v, paths, windows) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, paths, windows) for v in value]
    if not isinstance(value, str) or "{" not in value:
        return value
    for token, path in paths.items():
        value = value.replace("{%s}" % token, path)
    return value if windows else value.replace("\\", "/")


def assignment():
    """{row id: host}: good scenarios on lane1 in order, bad rows alternate."""
    where = {row[0]: "lane1" for row in cases.GOOD}
    for i, row in enumerate(cases.BAD):
        where[row[0]] = HOSTS[(i + 1) % 2]
    return where


def playbook(paths_of, windows):
    """One play: a task per row, on its host only."""
    where = assignment()
    tasks = []
    for row_id, module, args, check in ([(r[0], r[1], r[2], r[4]) for r in cases.BAD]
                                        + [(r[0], r[1], r[2], r[3]) for r in cases.GOOD]):
        host = where[row_id]
        tasks.append({"name": row_id, "ese.backup." + module: render(args, paths_of(host), windows),
                      "ignore_errors": True, "check_mode": check, "when": "inventory_hostname == '%s'" % host})
    play = [{"name": "agreement tables", "hosts": "all", "gather_facts": False, "strategy": "free",
             "tasks": tasks}]
    return json.dumps(play, indent=1)  # JSON is YAML


def outcomes(res, paths_of):
    where = assignment()
    found = {}
    for rec in res.records:
        if rec["status"] == "skipped" or where.get(rec["task"]) != rec["host"]:
            continue
        found[rec["task"]] = dict(rec, paths=paths_of(rec["host"]))
    return found


class EsesimLane:
    name = "esesim"

    def __init__(self, root):
        self.sim = Simulation(root)
        for host in HOSTS:
            self.sim.add_host(host)
            self.sim.hosts[host]["esesim_fixtures"][ESESIM_TMP] = ""

    @staticmethod
    def paths_of(host):
        return {"sru": SRU_DIR, "share": SHARE, "tmp": ESESIM_TMP}

    def local(self, host, windows_path):
        return self.sim.local(host, windows_path)

    def run(self):
        res = self.sim.run(playbook(self.paths_of, True), forks=2)
        return res, outcomes(res, self.paths_of)


class PwshLane:
    name = "pwsh"

    def __init__(self, root, pwsh):
        from lane import Lane, check_simulator  # tests/pwsh
        check_simulator()
        self.lane = Lane(root, pwsh)
        for host in HOSTS:
            self.lane.add_host(host)
        os.makedirs(os.path.join(self.lane.root, "share"), exist_ok=True)
        os.makedirs(os.path.join(self.lane.root, "tmp"), exist_ok=True)

    def paths_of(self, host):
        return {"sru": os.path.join(self.lane.host_root(host), "sru"), "share": os.path.join(self.lane.root, "share"),
                "tmp": os.path.join(self.lane.root, "tmp")}

    @staticmethod
    def local(host, path):
        return path

    def start(self):
        proc, dummy = self.lane.start(playbook(self.paths_of, False), forks=2, name="agreement")
        return proc

    def collect(self, proc):
        res = self.lane.collect(proc, timeout=1500)
        return res, outcomes(res, self.paths_of)


def _pwsh_lane_supported():
    import inspect
    from ansible.executor.powershell import module_manifest
    return "pwsh_interpreter" in inspect.signature(module_manifest._create_powershell_wrapper).parameters


@pytest.fixture(scope="module")
def lanes(tmp_path_factory):
    """Both lanes' outcomes ({row id: record}); the pwsh lane runs while esesim does."""
    pwsh_lane = proc = None
    if _pwsh_lane_supported():
        from pwsh import require_pwsh  # tests/lib
        try:
            pwsh = require_pwsh()  # fails, not skips, where ../shared/tools/pwsh should have given one
        except pytest.skip.Exception:
            pwsh = None  # no PowerShell here: the esesim half still runs, the comparisons skip
        if pwsh:
            pwsh_lane = PwshLane(tmp_path_factory.mktemp("pwsh"), pwsh)
            proc = pwsh_lane.start()
    esesim_lane = EsesimLane(tmp_path_factory.mktemp("esesim"))
    runs = {"esesim": (esesim_lane,) + esesim_lane.run()}
    if pwsh_lane:
        runs["pwsh"] = (pwsh_lane,) + pwsh_lane.collect(proc)
    return runs


def _row_problems(lane_name, rec, row):
    row_id, module, args, expected, dummy = row
    if rec is None:
        return ["%s %s: no result" % (lane_name, row_id)]
    msg = str(rec["result"].get("msg", ""))
    failed = rec["status"] == "failed"
    if expected is None and failed:
        return ["%s %s: expected success, failed: %s" % (lane_name, row_id, msg[:400])]
    if expected is not None and (not failed or expected not in named_options(module, args, msg)):
        return ["%s %s: expected a failure naming %r, got %s: %s"
                % (lane_name, row_id, expected, rec["status"], msg[:400])]
    return []


def test_the_tables_cover_every_module():
    modules = {os.path.basename(p)[:-4] for p in os.listdir(os.path.join(REPO, "plugins", "modules"))
               if p.endswith(".ps1")}
    assert len(cases.BAD) >= 30
    assert {row[1] for row in cases.BAD} == modules
    assert len({row[0] for row in cases.BAD + cases.GOOD}) == len(cases.BAD) + len(cases.GOOD)


def test_esesim_meets_the_bad_input_table(lanes):
    dummy, res, found = lanes["esesim"]
    problems = []
    for row in cases.BAD:
        problems += _row_problems("esesim", found.get(row[0]), row)
    assert not problems, "\n".join(problems) + "\n" + res.stdout[-3000:]


def test_the_lanes_agree_on_bad_input(lanes):
    if "pwsh" not in lanes:
        pytest.skip("the PowerShell 7 lane did not run: it needs pwsh and an ansible-core that runs PowerShell modules "
                    "on POSIX (2.21: .venv)")
    problems = []
    for row in cases.BAD:
        row_id, module, args = row[:3]
        seen = {}
        for name in ("esesim", "pwsh"):
            rec = lanes[name][2].get(row_id)
            if rec is None:
                problems.append("%s %s: no result" % (name, row_id))
                continue
            msg = str(rec["result"].get("msg", ""))
            seen[name] = (rec["status"] == "failed", named_options(module, args, msg), msg[:300])
        if len(seen) == 2 and seen["esesim"][:2] != seen["pwsh"][:2]:
            problems.append("%s: esesim %s / pwsh %s" % (row_id, seen["esesim"], seen["pwsh"]))
    for row in cases.BAD:
        problems += _row_problems("pwsh", lanes["pwsh"][2].get(row[0]), row)
    assert not problems, "\n".join(problems)


def normalise(value, paths):
    """A result value with the lane's paths replaced by placeholders and volatile fields dropped."""
    if isinstance(value, dict):
        return {k: normalise(v, paths) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list):
        return [normalise(v, paths) for v in value]
    if isinstance(value, str):
        for token, path in sorted(paths.items(), key=lambda kv: -len(kv[1])):
            value = re.sub(re.escape(path).replace(r"\\", r"[\\/]"), "{%s}" % token, value, flags=re.I)
        return value.replace("\\", "/")
    return value


def facts(lane, rec, row):
    row_id, module, args, dummy, compare = row
    out = {}
    for what in compare:
        if what == "trace":
            out["trace"] = [(c.get("call"), c.get("err")) for c in rec["result"].get("trace") or []]
        elif what == "set":
            dest = render(args["dest"] + "\\" + args["set_name"], rec["paths"], lane.name == "esesim")
            set_dir = lane.local(rec["host"], dest)
            files = sorted(os.path.relpath(os.path.join(d, n), set_dir) for d, dummy, ns in os.walk(set_dir) for n in ns)
            with open(os.path.join(set_dir, "manifest.json")) as f:
                manifest = json.load(f)
            out["set"] = {"files": files, "manifest_keys": sorted(manifest),
                          "manifest_files": sorted(e["name"] for e in manifest.get("files", []))}
        else:
            out[what] = normalise(rec["result"].get(what), rec["paths"])
    return out


def test_the_lanes_agree_on_good_scenarios(lanes):
    names = [n for n in ("esesim", "pwsh") if n in lanes]
    problems = []
    for row in cases.GOOD:
        seen = {}
        for name in names:
            lane, dummy, found = lanes[name]
            rec = found.get(row[0])
            if rec is None or rec["status"] == "failed":
                problems.append("%s %s: %s" % (name, row[0], rec and str(rec["result"].get("msg"))[:500]))
                continue
            seen[name] = facts(lane, rec, row)
        if len(seen) == 2 and seen["esesim"] != seen["pwsh"]:
            for key in seen["esesim"]:
                if seen["esesim"][key] != seen["pwsh"].get(key):
                    problems.append("%s %s differs:\n  esesim %s\n  pwsh   %s" % (
                        row[0], key, json.dumps(seen["esesim"][key])[:1500], json.dumps(seen["pwsh"].get(key))[:1500]))
    assert not problems, "\n".join(problems)
    if "pwsh" not in lanes:
        pytest.skip("esesim only: the PowerShell 7 lane did not run (it needs pwsh and ansible-core 2.21: .venv)")
