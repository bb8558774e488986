# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agreement tables: the same inputs for the simulated host (esesim) and the real modules under pwsh.

Paths are written Windows-style with placeholders: ``{sru}`` (a copy of a clean SRUM set: SRUDB.dat,
SRU.log, SRU.chk), ``{share}`` (the backup share, shared by the lane's hosts) and ``{tmp}`` (an empty
scratch folder). Each lane renders them for its own hosts.

BAD: (id, module, args, expected) where expected is the option the failure message must name, or
``None`` for an odd input that Ansible.Basic accepts (the case of a choice or of an option name).
GOOD: scenarios run in order on one host; ``compare`` names the engine facts both lanes must share.
"""

DB = "{sru}\\SRUDB.dat"
RUN = {"databases": [DB], "log_path": "{sru}", "base_name": "SRU"}
SESSION = dict(RUN, session="lane-none")

# (id, module, args, option the message names or None for success, check mode)
BAD = [
    # run: Ansible.Basic
    ("run-unknown-option", "run", dict(RUN, dest="{share}\\b01", bogus=1), "bogus", False),
    ("run-missing-dest", "run", dict(RUN), "dest", False),
    ("run-type-not-a-choice", "run", dict(RUN, dest="{share}\\b04", type="weekly"), "type", False),
    ("run-page-size-not-an-int", "run", dict(RUN, dest="{share}\\b05", page_size="big"), "page_size", False),
    ("run-page-size-not-a-choice", "run", dict(RUN, dest="{share}\\b06", page_size=3000), "page_size", False),
    ("run-buffer-a-fraction", "run", dict(RUN, dest="{share}\\b08", buffer_size=1.5), "buffer_size", False),
    ("run-databases-a-dict", "run", dict(RUN, dest="{share}\\b09", databases={"a": 1}), "databases", False),
    # run: the engine
    ("run-missing-database", "run", dict(RUN, dest="{share}\\b10", databases=["{sru}\\missing.edb"]),
     "databases", False),
    ("run-wrong-base-name", "run", dict(RUN, dest="{share}\\b11", base_name="edb"), "base_name", False),
    ("run-relative-dest", "run", dict(RUN, dest="backups\\web"), "dest", False),
    ("run-legacy-names-out-of-range", "run", dict(RUN, dest="{share}\\b13", legacy_file_names=256),
     "legacy_file_names", False),
    ("run-set-name-climbs-out", "run", dict(RUN, dest="{share}\\b14", set_name=".."), "set_name", False),
    # run: odd but accepted (check mode: nothing is written)
    ("run-choice-in-upper-case", "run", dict(RUN, dest="{share}\\b16", type="FULL"), None, True),
    ("run-option-name-in-other-case", "run", dict(RUN, Dest="{share}\\b17"), None, True),
    # info
    ("info-no-options", "info", {}, "databases", False),
    ("info-sessions-not-a-bool", "info", {"sessions": "perhaps"}, "sessions", False),
    ("info-unknown-option", "info", {"backup_path": "{share}", "bogus": True}, "bogus", False),
    # restore
    ("restore-missing-backup-set", "restore", {"drill": True}, "backup_set", False),
    ("restore-map-unknown-key", "restore",
     {"backup_set": "{share}\\none", "restore_map": [{"source": DB, "target": "{tmp}\\t.edb", "extra": 1}]},
     "extra", False),
    ("restore-map-missing-target", "restore", {"backup_set": "{share}\\none", "restore_map": [{"source": DB}]},
     "target", False),
    # drill: false beside restore_map passes the spec (no mutually_exclusive: it counts present keys
    # before defaults); the engine then names the missing set
    ("restore-drill-false-with-map", "restore",
     {"backup_set": "{share}\\none", "drill": False, "restore_map": [{"source": DB, "target": "{tmp}\\t.edb"}]},
     "backup_set", False),
    ("restore-drill-not-a-bool", "restore", {"backup_set": "{share}\\none", "drill": "sometimes"}, "drill", False),
    ("restore-incrementals-a-bool", "restore", {"backup_set": "{share}\\none", "incrementals": True},
     "incrementals", False),
    ("restore-missing-set", "restore", {"backup_set": "{share}\\none", "drill": True, "scratch": "{tmp}"},
     "backup_set", False),
    # begin
    ("begin-missing-session", "begin", dict(RUN), "session", False),
    ("begin-type-not-a-choice", "begin", dict(SESSION, type="weekly"), "type", False),
    ("begin-idle-timeout-not-an-int", "begin", dict(SESSION, idle_timeout="soon"), "idle_timeout", False),
    ("begin-unknown-option", "begin", dict(SESSION, bogus="x"), "bogus", False),
    ("begin-choice-in-mixed-case", "begin", dict(SESSION, type="Copy"), None, True),
    # copy
    ("copy-missing-dest", "copy", {"session": "lane-none"}, "dest", False),
    ("copy-logs-not-a-bool", "copy", {"session": "lane-none", "dest": "{share}\\c02", "logs": "x"}, "logs", False),
    # truncate
    ("truncate-missing-session", "truncate", {}, "session", False),
    # end
    ("end-mode-not-a-choice", "end", {"session": "lane-none", "mode": "later"}, "mode", False),
    ("end-truncate-done-not-a-bool", "end", {"session": "lane-none", "truncate_done": "y?"}, "truncate_done",
     False),
    ("end-missing-session", "end", {"mode": "abort"}, "session", False),
    # session_host (internal)
    ("session-host-serve-without-serve-file", "session_host", {"mode": "serve", "session": "lane-none"},
     "serve_file", False),
    ("session-host-mode-not-a-choice", "session_host", {"mode": "run", "session": "lane-none"}, "mode", False),
    ("session-host-missing-mode", "session_host", {"session": "lane-none"}, "mode", False),
    # prune on a Windows host (the engine's side) and the CA's extra files
    ("prune-host-mode-not-a-choice", "prune_host", {"mode": "delete", "path": "{share}"}, "mode", False),
    ("prune-host-missing-path", "prune_host", {"mode": "scan"}, "path", False),
    ("ca-files-mode-not-a-choice", "ca_files", {"mode": "everything"}, "mode", False),
    ("ca-files-key-not-a-bool", "ca_files", {"key": "maybe"}, "key", False),
]

# (id, module, args, check mode, facts to compare: "trace" (calls and errors), "set" (files and manifest
# keys of the set written under args["dest"]\args["set_name"]), or a list of result keys)
GOOD = [
    ("good-info-database", "info", {"databases": [DB]}, False, ["databases"]),
    ("good-run-check-mode", "run", dict(RUN, dest="{share}\\g", set_name="g1"), True, ["trace"]),
    ("good-run-full", "run", dict(RUN, dest="{share}\\g", set_name="g1"), False, ["trace", "set"]),
    ("good-info-sets", "info", {"backup_path": "{share}\\g"}, False, ["backup_sets"]),
    ("good-restore-drill", "restore", {"backup_set": "{share}\\g\\g1", "drill": True, "scratch": "{tmp}"},
     False, ["trace"]),
]
