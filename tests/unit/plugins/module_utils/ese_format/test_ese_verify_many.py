# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""verify_many and verify_subfolders: a share of host folders verified in parallel processes.

Every result equals what verify(path) alone returns; the worker processes never exceed the bound; bad
values are refused with the option named.
"""
import multiprocessing
import os
import time

import pytest

from ansible_collections.ese.backup.plugins.module_utils.ese_format import verify as vf


def comparable(res):
    """A result without what differs between two runs (the time taken) and without the many-path name."""
    return dict((k, v) for k, v in res.items() if k not in ("seconds", "name"))


@pytest.fixture
def share(tmp_path, synth):
    """Host folders of every kind: valid chains, a damaged page, a missing log, kept logs, plain files."""
    root = tmp_path / "share"
    root.mkdir()
    made = {}
    for host in ("web01", "web02"):
        d = str(root / host)
        os.mkdir(d)
        synth.make_backup_set(d, "full-1", "full", 10, 12, seed=3)
        synth.make_backup_set(d, "inc-2", "incremental", 13, 14, seed=3)
        made[host] = d
    bad = str(root / "web03")                          # a page bit-flipped twice: DB_PAGE_CHECKSUM, hash mismatch
    os.mkdir(bad)
    s = synth.make_backup_set(bad, "full-1", "full", 10, 12, seed=4, pages=40)
    db = os.path.join(s, "databases", "test.edb")
    synth.corrupt(db, (7 + 1) * 4096 + 100, 1)
    synth.corrupt(db, (7 + 1) * 4096 + 2000, 3)
    made["web03"] = bad
    gap = str(root / "web04")                          # a log taken away: FILE_MISSING and a gap
    os.mkdir(gap)
    s = synth.make_backup_set(gap, "full-1", "full", 20, 24, seed=5)
    os.remove(os.path.join(s, "logs", "edb%05X.log" % 22))
    made["web04"] = gap
    kept = str(root / "web05")                         # a full set and logs kept after a failed end
    os.mkdir(kept)
    synth.make_backup_set(kept, "full-1", "full", 10, 12, seed=6)
    synth.make_kept_logs(kept, "inc-2", "incremental", gen_low=13, gen_high=14, seed=6)
    made["web05"] = kept
    made["db"] = str(tmp_path / "plain.edb")           # not under the share: a bare database file
    synth.make_database(made["db"], 8192, pages=30)
    return str(root), made


def test_results_equal_verify_alone_for_valid_and_damaged_sets(share):
    root, made = share
    paths = [made[k] for k in ("web01", "web03", "web02", "web04", "db", "web05")]
    alone = [vf.verify(p) for p in paths]
    assert [r["valid"] for r in alone] == [True, False, True, False, True, True]
    assert "DB_PAGE_CHECKSUM" in [p["code"] for p in alone[1]["problems"]]
    assert "FILE_MISSING" in [p["code"] for p in alone[3]["problems"]]
    for processes in (1, 2, 4):
        many = vf.verify_many(paths, processes=processes)
        assert many["processes"] == min(processes, len(paths))
        assert [r["name"] for r in many["results"]] == ["web01", "web03", "web02", "web04", "plain.edb", "web05"]
        assert [comparable(r) for r in many["results"]] == [comparable(r) for r in alone], processes
        assert many["valid"] is False and many["restorable"] is False
        assert many["error_count"] == sum(r["error_count"] for r in alone)
        assert many["warning_count"] == sum(r["warning_count"] for r in alone)
        assert [(p["name"], p["code"]) for p in many["problems"]] == [
            (n, p["code"]) for n, r in zip(["web01", "web03", "web02", "web04", "plain.edb", "web05"], alone)
            for p in r["problems"]]
    ok = vf.verify_many([made["web01"], made["web02"]], names=["a", "b"])
    assert ok["valid"] is True and ok["restorable"] is True and [r["name"] for r in ok["results"]] == ["a", "b"]


def test_a_path_that_cannot_be_verified_is_a_failed_result(share):
    root, made = share
    many = vf.verify_many([made["web01"], os.path.join(root, "gone"), made["web02"]], processes=2)
    assert [r.get("failed", False) for r in many["results"]] == [False, True, False]
    assert "does not exist" in many["results"][1]["msg"] and many["results"][1]["valid"] is None
    assert many["valid"] is False and many["failed_paths"] == [os.path.join(root, "gone")]
    assert many["results"][0]["valid"] is True and many["results"][2]["valid"] is True


def test_subfolders_are_the_host_folders(share, tmp_path):
    root, made = share
    os.mkdir(os.path.join(root, ".hidden"))
    os.symlink(made["web01"], os.path.join(root, "web06"))
    with open(os.path.join(root, "report.json"), "w") as f:
        f.write("{}")
    res = vf.verify_subfolders(root, processes=2)
    assert [r["name"] for r in res["results"]] == ["web01", "web02", "web03", "web04", "web05", "web06"]
    assert [r["valid"] for r in res["results"]] == [True, True, False, False, True, False]
    assert [p["code"] for p in res["results"][5]["problems"]] == ["FOLDER_SYMLINK"]
    assert comparable(res["results"][2]) == comparable(vf.verify(made["web03"]))


@pytest.mark.parametrize("what", ["a set", "a folder of sets", "a file", "empty"])
def test_subfolders_refuses_what_is_not_a_folder_of_host_folders(share, tmp_path, what):
    root, made = share
    target = {"a set": os.path.join(made["web01"], "full-1"), "a folder of sets": made["web01"],
              "a file": made["db"], "empty": str(tmp_path / "empty")}[what]
    if what == "empty":
        os.mkdir(target)
    with pytest.raises(ValueError) as e:
        vf.verify_subfolders(target)
    assert {"a set": "is a backup set itself", "a folder of sets": "is a folder of backup sets itself",
            "a file": "is not a folder", "empty": "holds no folder"}[what] in str(e.value)


@pytest.mark.parametrize("bad", [0, -1, vf.MAX_PROCESSES + 1, True, "2", 1.5])
def test_bad_processes_are_refused(share, bad):
    root, made = share
    with pytest.raises(ValueError) as e:
        vf.verify_many([made["web01"]], processes=bad)
    assert "processes must be a whole number from 1 to %d" % vf.MAX_PROCESSES in str(e.value)
    with pytest.raises(ValueError):
        vf.verify_subfolders(root, processes=bad)


def test_names_must_match_the_paths(share):
    root, made = share
    with pytest.raises(ValueError) as e:
        vf.verify_many([made["web01"], made["web02"]], names=["web01"])
    assert "names must name every path: 1 names for 2 paths" in str(e.value)


def test_default_processes_is_the_cores_this_process_may_use():
    want = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert vf.default_processes() == want >= 1


class Probe(object):
    """A stand-in for verify() that counts, across forked workers, how many run at once and in which pids."""

    def __init__(self, peers):
        self.lock = multiprocessing.Lock()
        self.running = multiprocessing.Value("i", 0, lock=False)
        self.most = multiprocessing.Value("i", 0, lock=False)
        self.peers = peers         # wait (bounded) until this many run at once, so that the bound is reached
        self.pids = multiprocessing.Array("i", 64, lock=False)
        self.calls = multiprocessing.Value("i", 0, lock=False)

    def __call__(self, path, checksums=True, workers=None):
        with self.lock:
            self.running.value += 1
            self.most.value = max(self.most.value, self.running.value)
            self.pids[self.calls.value] = os.getpid()
            self.calls.value += 1
        deadline = time.time() + 5
        while time.time() < deadline and self.running.value < self.peers and self.most.value < self.peers:
            time.sleep(0.005)
        time.sleep(0.02)
        with self.lock:
            self.running.value -= 1
        return vf._result("folder", path, [])


@pytest.mark.parametrize("processes,paths", [(1, 4), (2, 7), (3, 7), (8, 3)])
def test_the_bound_on_processes_is_honoured(monkeypatch, tmp_path, processes, paths):
    bound = min(processes, paths)
    probe = Probe(bound)
    monkeypatch.setattr(vf, "verify", probe)
    res = vf.verify_many([str(tmp_path / ("h%d" % i)) for i in range(paths)], processes=processes)
    assert res["processes"] == bound and len(res["results"]) == paths and res["valid"] is True
    assert probe.calls.value == paths
    assert probe.most.value == bound                       # reached, never passed
    pids = set(probe.pids[:paths])
    assert len(pids) == bound
    assert (os.getpid() in pids) == (bound == 1)           # one process: no worker forked


def test_a_worker_that_dies_fails_its_path_instead_of_hanging_the_task(monkeypatch, tmp_path):
    real = vf.verify

    def dies_on_h1(path, **kw):
        if path.endswith("h1"):
            os._exit(9)            # as the OOM killer would
        if path.endswith("h2"):
            raise KeyError("a bug")
        return real(path, **kw)
    monkeypatch.setattr(vf, "verify", dies_on_h1)
    paths = [str(tmp_path / ("h%d" % i)) for i in range(3)]
    for p in paths:
        os.mkdir(p)
    res = vf.verify_many(paths, processes=2)
    by = dict((r["name"], r) for r in res["results"])
    assert by["h1"]["failed"] is True and "worker process died" in by["h1"]["msg"]
    assert by["h2"]["failed"] is True and "KeyError" in by["h2"]["msg"]
    assert comparable(by["h0"]) == comparable(real(paths[0]))   # verified (again, if the pool broke first)
    assert res["valid"] is False and len(res["results"]) == 3
