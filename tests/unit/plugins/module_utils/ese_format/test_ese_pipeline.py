# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""check_database's read / hash / check pipeline: the stages overlap, memory is a fixed ring, errors end it.

Not timed: the overlap is shown by ordering (chunk 0's page check waits until the next chunk's hash has
started, which a serial pass can never do), through database.STAGE_HOOK.
"""
import hashlib
import threading

import pytest

from ansible_collections.ese.backup.plugins.module_utils.ese_format import database as dbm

CB = 4096
CHUNK = 4 * CB          # 4 pages a chunk: many chunks from a small database
WAIT = 10               # seconds a hook waits for the other stage before it gives up


@pytest.fixture
def db(tmp_path, synth):
    p = str(tmp_path / "pipe.edb")
    synth.make_database(p, CB, pages=62, zero_every=5)
    with open(p, "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    return p, want


@pytest.fixture
def hook():
    yield
    dbm.STAGE_HOOK = None


def pages_of(info):
    return (info["pages_checked"], info["pages_ok"], info["pages_zero"], info["bad_pages"])


@pytest.mark.parametrize("use_numpy", [True, False])
def test_hash_of_the_next_chunk_runs_while_a_chunk_is_checked(db, hook, use_numpy):
    path, want = db
    baseline = dbm.check_database(path, want_sha256=True, use_numpy=use_numpy)
    started = {}
    lock = threading.Lock()
    seen = {"overlap": None, "threads": set(), "in_flight": 0, "max_in_flight": 0}

    def on_stage(stage, event, k):
        with lock:
            seen["threads"].add((stage, threading.current_thread().name))
            if stage == "hash" and event == "start":
                started.setdefault(k, threading.Event()).set()
                seen["in_flight"] += 1
                seen["max_in_flight"] = max(seen["max_in_flight"], seen["in_flight"])
            elif stage == "check" and event == "end":
                seen["in_flight"] -= 1
            nxt = started.setdefault(1, threading.Event())
        if (stage, event, k) == ("check", "start", 0):
            seen["overlap"] = nxt.wait(WAIT)      # a serial pass blocks here: chunk 1 is hashed after this check
    dbm.STAGE_HOOK = on_stage
    info, probs = dbm.check_database(path, want_sha256=True, use_numpy=use_numpy, chunk_bytes=CHUNK)
    assert seen["overlap"] is True, "chunk 1 was not hashed while chunk 0 was checked"
    hash_threads = set(t for s, t in seen["threads"] if s == "hash")
    check_threads = set(t for s, t in seen["threads"] if s == "check")
    assert hash_threads and check_threads and not hash_threads & check_threads
    # flat memory: never more chunks between read and checked than the ring holds
    assert 2 <= seen["max_in_flight"] <= dbm.PIPELINE_BUFFERS
    assert probs == [] and info["sha256"] == want and baseline[0]["sha256"] == want
    assert pages_of(info) == pages_of(baseline[0])


def test_pipelined_results_equal_one_chunk_results_on_damaged_pages(db, hook, synth):
    path, dummy_want = db
    for pg in (3, 17, 41):      # not multiples of 5: those pages are all zero
        synth.corrupt(path, (pg + 1) * CB + 100, 2)            # single-bit: correctable
    synth.corrupt(path, (26 + 1) * CB + 7, 0)
    synth.corrupt(path, (26 + 1) * CB + 900, 5)                # two bits: bad
    with open(path, "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    one = dbm.check_database(path, want_sha256=True, chunk_bytes=1 << 20)
    for use_numpy in (True, False):
        many = dbm.check_database(path, want_sha256=True, chunk_bytes=CHUNK, use_numpy=use_numpy)
        assert many[0]["sha256"] == want == one[0]["sha256"]
        assert many[1] == one[1] and pages_of(many[0]) == pages_of(one[0])
        assert many[0]["correctable_pages"] == [3, 17, 41] and 26 in many[0]["bad_pages"]


@pytest.mark.parametrize("stage", ["hash", "check"])
def test_an_error_in_a_stage_ends_the_pipeline(db, hook, stage):
    path, dummy_want = db
    before = threading.active_count()

    def on_stage(s, event, k):
        if (s, event, k) == (stage, "start", 3):
            raise OSError(5, "Input/output error")
    dbm.STAGE_HOOK = on_stage
    info, probs = dbm.check_database(path, want_sha256=True, chunk_bytes=CHUNK)
    assert [p["code"] for p in probs] == ["READ_ERROR"] and "Input/output error" in probs[0]["detail"]
    assert threading.active_count() == before


def test_a_file_that_shrinks_is_hashed_as_read(db, hook):
    """The file gets shorter while it is read: what was read is hashed, no page past the end is checked.

    While chunk 0 is hashed, the reader holds at most the ring's other buffers (chunks 1 to 3), so the cut,
    half-way into the next chunk, lands before that chunk is read.
    """
    path, dummy_want = db
    pages_per_chunk = CHUNK // CB
    cut_pages = 2 + dbm.PIPELINE_BUFFERS * pages_per_chunk + pages_per_chunk // 2

    def on_stage(stage, event, k):
        if (stage, event, k) == ("hash", "start", 0):
            with open(path, "r+b") as f:
                f.truncate(cut_pages * CB)
    dbm.STAGE_HOOK = on_stage
    info, dummy_probs = dbm.check_database(path, want_sha256=True, chunk_bytes=CHUNK)
    with open(path, "rb") as f:
        assert info["sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert info["pages_checked"] == cut_pages - 2
