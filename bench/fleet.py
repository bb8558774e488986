# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The main job (playbooks/backup.yml) against N simulated Windows hosts: what it costs the controller per host.

For each host count N and forks F, two runs of real ansible-playbook through the simulated-host connection
plugin (tests/sim/plugins/connection/esesim.py), as `make demo` runs the job, each host with the SRUM set
srum-server2022-clean and the share \\\\backup01\\ese, the backup server the controller (localhost):
  floor:  one `ese.backup.info` task with `sessions: true` per host: the cheapest module round trip there is
          through that plugin (it runs only the collection's modules; there is no win_ping without
          ansible.windows), one engine call that reads an empty session folder;
  backup: playbooks/backup.yml (info and run per host, then on the backup server verify, the retention
          policy as the demo inventory sets it, and the reports).
Per run it prints:
  wall        seconds of the ansible-playbook run (fixtures are placed before it starts);
  ctl cpu/h   controller CPU seconds per host: user + system of ansible-playbook and everything it waited
              for (resource usage of the reaped process tree, os.wait4), less the simulated hosts' share,
              which ESESIM_COUNT_FILE gives per module call: the engine processes (Mono) each call waited
              for, and the plugin's own work in the fork. It includes the backup server's tasks (verify, the
              prune, reports: local Python modules, since the backup server is the controller here) and
              ansible-playbook's start and end; it does not include a WinRM transport's own cost (pywinrm,
              TLS), which the simulated host does not have;
  hosts play  of that, the play on the Windows hosts (info, run), per host: bench/callback/fleet_clock.py
              marks the CPU time at each play's start;
  server play of that, the plays on the backup server (verify, prune, reports), per Windows host;
  host cpu/h  the simulated hosts' share per host (engine processes + plugin work), apart from the above;
  peak PSS    the highest sum, over 0.25 s samples, of the proportional set size of the controller processes
              (ansible-playbook, its forks, the backup server's modules; engine processes excluded): shared
              pages of the forks count once; peak RSS is the largest single controller process;
  rt/h        module executions per host on the Windows hosts (each is one WinRM round trip on a real host),
              from the plugin's count; x floor is that over the floor run's.

Usage: python bench/fleet.py [--hosts 10,50,200] [--forks 10,50] [--json] [--keep]
Needs `make build`. Works in a temporary folder under build/ and removes it (--keep keeps it).
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "sim"))
sys.path.insert(0, os.path.join(ROOT, "tests", "sim", "plugins", "connection"))

import esesim  # noqa: E402  (tests/sim/plugins/connection: PathMap, place_fixtures)
from run_playbook import simulated_env  # noqa: E402  (tests/sim)

PLAYBOOK = os.path.join(ROOT, "playbooks", "backup.yml")
CALLBACKS = os.path.join(ROOT, "bench", "callback")  # fleet_clock: the CPU time at each play's start
FIXTURE = os.path.join(ROOT, "tests", "data", "ese", "sets", "srum-server2022-clean")
SRU_DIR = "C:\\Windows\\System32\\sru"
SHARE = "\\\\backup01\\ese"
FLOOR = "one ese.backup.info task with sessions: true per host"
FLOOR_PLAYBOOK = """---
- name: The cheapest module round trip
  hosts: ese_hosts
  gather_facts: false
  tasks:
    - name: Read the backup sessions (none)
      ese.backup.info:
        sessions: true
"""
SAMPLE_EVERY = 0.25


def inventory(root, hosts):
    """The demo inventory's shape for ``hosts`` simulated hosts, all with the same SRUM set."""
    names = ["h%03d" % i for i in range(1, hosts + 1)]
    fixtures = {SRU_DIR: FIXTURE, SHARE: ""}
    return names, {"all": {"children": {
        "ese_hosts": {
            "vars": {"ansible_connection": "esesim", "esesim_fixtures": fixtures,
                     "ese_databases": [SRU_DIR + "\\SRUDB.dat"], "ese_log_path": SRU_DIR,
                     "ese_base_name": "SRU", "ese_backup_share": SHARE},
            "hosts": dict((name, {}) for name in names)},
        "backup_server": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "backup_server_path": os.path.join(root, "unc", "backup01", "ese"),
            "report_path": os.path.join(root, "report.json"),
            "ese_retention": {"keep_full": 7, "min_verified": 1}}}}}}}


def _proc_table():
    """{pid: (ppid, comm)} of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        table[int(entry)] = (int(stat[stat.rindex(")") + 2:].split()[1]), comm)
    return table


def controller_pids(top):
    """``top`` and its descendants, without the engine processes (Mono: the engine, the compiler) and theirs."""
    table = _proc_table()
    children = {}
    for pid, (ppid, _comm) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [top]
    while todo:
        pid = todo.pop()
        if pid not in table or table[pid][1].startswith("mono"):
            continue
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _memory_kib(pid):
    """(Pss, Rss) in KiB of one process, or None when it is gone."""
    values = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                key, _sep, rest = line.partition(":")
                if key in ("Pss", "Rss"):
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError):
        return None
    return values.get("Pss", 0), values.get("Rss", 0)


class MemorySampler(threading.Thread):
    def __init__(self, top):
        super().__init__(daemon=True)
        self.top = top
        self.peak_pss = self.peak_rss = self.peak_procs = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            sizes = [m for m in (_memory_kib(pid) for pid in controller_pids(self.top)) if m]
            self.peak_pss = max(self.peak_pss, sum(m[0] for m in sizes))
            self.peak_rss = max([self.peak_rss] + [m[1] for m in sizes])
            self.peak_procs = max(self.peak_procs, len(sizes))
            self.done.wait(SAMPLE_EVERY)


def run_playbook(work, hosts, forks, playbook):
    """One ansible-playbook run against ``hosts`` fresh simulated hosts under ``work``; its figures."""
    os.makedirs(work)
    names, inv = inventory(work, hosts)
    inv_path = os.path.join(work, "inventory.yml")
    with open(inv_path, "w") as f:
        yaml.safe_dump(inv, f)
    for name in names:  # before the clock starts, as `make demo`'s hosts have theirs from the first task
        esesim.place_fixtures(esesim.PathMap(work, name), {SRU_DIR: FIXTURE, SHARE: ""})
    count_file = os.path.join(work, "executions.jsonl")
    clock_file = os.path.join(work, "clock.jsonl")
    env = simulated_env(sim_root=work)
    env.update(ANSIBLE_FORKS=str(forks), ESESIM_COUNT_FILE=count_file, FLEET_CLOCK_FILE=clock_file,
               ANSIBLE_CALLBACK_PLUGINS=env["ANSIBLE_CALLBACK_PLUGINS"] + os.pathsep + CALLBACKS)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inv_path, playbook]
    with open(os.path.join(work, "ansible.log"), "wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        sampler = MemorySampler(proc.pid)
        sampler.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.done.set()
        sampler.join()
    calls, marks = _lines(count_file), _lines(clock_file)
    host_cpu = sum(c["host_cpu"] + c["plugin_cpu"] for c in calls)
    total_cpu = usage.ru_utime + usage.ru_stime
    per_host = dict((name, 0) for name in names)
    for c in calls:
        per_host[c["host"]] = per_host.get(c["host"], 0) + 1
    figures = {
        "rc": proc.returncode, "wall_s": round(wall, 2), "cpu_total_s": round(total_cpu, 2),
        "host_cpu_s": round(host_cpu, 2),
        "controller_cpu_s_per_host": round((total_cpu - host_cpu) / hosts, 4),
        "host_cpu_s_per_host": round(host_cpu / hosts, 4),
        "peak_pss_mib": round(sampler.peak_pss / 1024.0, 1), "peak_rss_mib": round(sampler.peak_rss / 1024.0, 1),
        "peak_controller_processes": sampler.peak_procs,
        "round_trips_per_host": round(len(calls) / float(hosts), 3),
        "round_trips_min_max": [min(per_host.values()), max(per_host.values())],
        "modules": sorted(set(c["module"] or "?" for c in calls)),
        "plays": plays(marks, calls, hosts),
    }
    if marks:  # ansible-playbook's start (inventory, plugins) and end, outside every play
        in_plays = marks[-1]["self_cpu"] + marks[-1]["children_cpu"] - marks[0]["self_cpu"] - marks[0]["children_cpu"]
        figures["outside_plays_cpu_s"] = round(total_cpu - in_plays, 2)
    if proc.returncode != 0:
        with open(os.path.join(work, "ansible.log"), "rb") as f:
            figures["log_tail"] = f.read()[-3000:].decode("utf-8", "replace")
    return figures


def _lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def plays(marks, calls, hosts):
    """Each play's wall time and controller CPU seconds per host (its forks' time less the simulated hosts'
    share of the module calls that ended in it), from the fleet_clock marks."""
    found = []
    for start, end in zip(marks, marks[1:]):
        cpu = (end["self_cpu"] + end["children_cpu"]) - (start["self_cpu"] + start["children_cpu"])
        share = sum(c["host_cpu"] + c["plugin_cpu"] for c in calls if start["time"] <= c["time"] < end["time"])
        found.append({"name": start["name"], "wall_s": round(end["time"] - start["time"], 2),
                      "controller_cpu_s_per_host": round((cpu - share) / hosts, 4)})
    return found


def report_counts(work):
    """(backed up, verified) hosts in the run's report.json."""
    path = os.path.join(work, "report.json")
    if not os.path.exists(path):
        return 0, 0
    with open(path) as f:
        entries = json.load(f)
    return (sum(1 for e in entries if e["status"] == "ok"),
            sum(1 for e in entries if (e["verified"] or {}).get("valid") is True))


def measure(work, hosts, forks):
    floor = run_playbook(os.path.join(work, "n%d-f%d-floor" % (hosts, forks)), hosts, forks,
                         os.path.join(work, "floor.yml"))
    backup_dir = os.path.join(work, "n%d-f%d-backup" % (hosts, forks))
    backup = run_playbook(backup_dir, hosts, forks, PLAYBOOK)
    backup["backed_up"], backup["verified"] = report_counts(backup_dir)
    ratio = backup["round_trips_per_host"] / floor["round_trips_per_host"] if floor["round_trips_per_host"] else None
    return {"hosts": hosts, "forks": forks, "backup": backup, "floor": floor,
            "round_trips_vs_floor": round(ratio, 3) if ratio is not None else None}


def _git(*args):
    proc = subprocess.run(["git"] + list(args), cwd=ROOT, capture_output=True, text=True, check=False)
    return proc.stdout.strip()


TABLE = [("hosts", "%5s", lambda r: r["hosts"]), ("forks", "%5s", lambda r: r["forks"]),
         ("run", "%-6s", None),
         ("wall s", "%7.1f", lambda x: x["wall_s"]),
         ("ctl cpu/h", "%9.3f", lambda x: x["controller_cpu_s_per_host"]),
         ("hosts play", "%10.3f", lambda x: _play_cpu(x, 0)),
         ("server play", "%11s", lambda x: "-" if len(x["plays"]) < 2 else "%.3f" % _play_cpu(x, 1)),
         ("host cpu/h", "%10.3f", lambda x: x["host_cpu_s_per_host"]),
         ("peak PSS MiB", "%12.1f", lambda x: x["peak_pss_mib"]),
         ("peak RSS MiB", "%12.1f", lambda x: x["peak_rss_mib"]),
         ("rt/h", "%5.2f", lambda x: x["round_trips_per_host"])]


def _play_cpu(run, index):
    """Controller CPU per host of the play ``index`` (0: the Windows hosts' play; 1: all those after it)."""
    if index == 0:
        return run["plays"][0]["controller_cpu_s_per_host"] if run["plays"] else float("nan")
    return sum(p["controller_cpu_s_per_host"] for p in run["plays"][1:])


def print_table(results):
    print("  ".join(name.ljust(6) if name == "run" else name for name, _fmt, _get in TABLE)
          + "  x floor  backed up/verified")
    for r in results:
        for kind in ("floor", "backup"):
            run = r[kind]
            cells = []
            for name, fmt, get in TABLE:
                if get is None:
                    value = kind
                elif name in ("hosts", "forks"):
                    value = get(r)
                else:
                    value = get(run)
                cells.append((fmt % value).rjust(len(name)) if name != "run" else (fmt % value))
            line = "  ".join(cells)
            if kind == "backup":
                line += "  %7s  %d/%d" % ("%.2f" % r["round_trips_vs_floor"] if r["round_trips_vs_floor"] else "-",
                                           run["backed_up"], run["verified"])
            if run["rc"]:
                line += "  rc=%d" % run["rc"]
            print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", default="10,50,200", help="host counts, comma-separated (default 10,50,200)")
    ap.add_argument("--forks", default="10,50", help="forks, comma-separated (default 10,50)")
    ap.add_argument("--json", action="store_true", help="end with one JSON object on the last line")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (its path is printed)")
    a = ap.parse_args()
    try:
        host_counts = [int(v) for v in a.hosts.split(",")]
        forks_list = [int(v) for v in a.forks.split(",")]
    except ValueError:
        ap.error("--hosts and --forks take whole numbers separated by commas, for example --hosts 10,50")
    if min(host_counts + forks_list) < 1:
        ap.error("--hosts and --forks must be 1 or more")
    for needed in (os.path.join(ROOT, "build", "sim", "libesent.so"), os.path.join(ROOT, "build", "collections")):
        if not os.path.exists(needed):
            ap.error("%s is missing: run 'make build'" % needed)
    os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench-fleet-", dir=os.path.join(ROOT, "build"))
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": _git("rev-parse", "--short", "HEAD"),
            "tree_changed": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "uptime_before": load_averages(), "cpus": os.cpu_count(), "floor": FLOOR,
            "fixture": os.path.basename(FIXTURE)}
    try:
        with open(os.path.join(work, "floor.yml"), "w") as f:
            f.write(FLOOR_PLAYBOOK)
        # Once unmeasured: the compile caches of the payloads (build/esesim) and the page cache are warm.
        warm = run_playbook(os.path.join(work, "warm-up"), 2, 2, PLAYBOOK)
        if warm["rc"]:
            sys.exit("the warm-up run failed (rc %d):\n%s" % (warm["rc"], warm.get("log_tail", "")))
        results = []
        for hosts in host_counts:
            for forks in forks_list:
                results.append(measure(work, hosts, forks))
                print("# %d hosts, forks %d: %.0f s" % (hosts, forks, results[-1]["backup"]["wall_s"]
                                                        + results[-1]["floor"]["wall_s"]), file=sys.stderr)
        info["uptime_after"] = load_averages()
    finally:
        if a.keep:
            print("work folder kept: %s" % work, file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("ese.backup fleet bench, %s, commit %s%s; load before: %s; after: %s"
          % (info["date"], info["commit"], " (working tree differs)" if info["tree_changed"] else "",
             info["uptime_before"], info["uptime_after"]))
    print("floor: %s; each host: %s" % (FLOOR, info["fixture"]))
    print_table(results)
    for r in results:
        for kind in ("floor", "backup"):
            if r[kind]["rc"]:
                print("\n%d hosts, forks %d, %s: ansible-playbook exited with %d:\n%s"
                      % (r["hosts"], r["forks"], kind, r[kind]["rc"], r[kind].get("log_tail", "")))
    if a.json:
        print(json.dumps(dict(info, results=results), sort_keys=True))
    return 1 if any(r[kind]["rc"] for r in results for kind in ("floor", "backup")) else 0


def load_averages():
    """The load averages of `uptime`."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


if __name__ == "__main__":
    sys.exit(main())
