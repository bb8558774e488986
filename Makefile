# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# ese.backup — build, test and demo entry points. `make test` and `make demo` set everything up.
SHELL := /bin/bash
ROOT := $(abspath .)
BUILD := $(ROOT)/build
VENV := $(ROOT)/.venv
VENV_MIN := $(ROOT)/.venv-min
PY := $(VENV)/bin/python
CFLAGS_SIM := -std=c11 -O2 -g -fPIC -Wall -Wextra -Werror -fvisibility=hidden -D_GNU_SOURCE
MCS := mcs -langversion:5 -warnaserror+ -nologo
SIM_SRC := $(wildcard tests/sim/esent/*.c)
SIM_HDR := $(wildcard tests/sim/esent/*.h)
ENGINE_SRC := $(wildcard plugins/module_utils/*.cs)
export LD_LIBRARY_PATH := $(BUILD)/sim$(if $(LD_LIBRARY_PATH),:$(LD_LIBRARY_PATH))

.PHONY: setup sim engine build test test-lanes test-rest test-min demo sanity lint docs-venv docs-site bench bench-fleet gen clean
setup: $(VENV)/.done $(BUILD)/collections/ansible_collections/ese/backup

$(VENV)/.done: requirements-test.txt tools/bootstrap.sh
	tools/bootstrap.sh main $(VENV)
	touch $@

$(VENV_MIN)/.done: requirements-min.txt tools/bootstrap.sh
	tools/bootstrap.sh min $(VENV_MIN)
	touch $@

$(BUILD)/collections/ansible_collections/ese/backup:
	mkdir -p $(dir $@) && ln -sfn $(ROOT) $@

sim: $(BUILD)/sim/libesent.so $(BUILD)/sim/libcertadm.so $(BUILD)/sim/certsvc-sim
$(BUILD)/sim/libesent.so: $(SIM_SRC) $(SIM_HDR)
	mkdir -p $(dir $@)
	gcc $(CFLAGS_SIM) -shared -o $@ $(SIM_SRC) -lm
	ln -sfn libesent.so $(BUILD)/sim/esent.dll  # .NET (PowerShell 7) probes the name as written

# certadm.dll (the AD CS backup client) and the CA service it talks to, which links the esent simulator.
CERTADM_DIR := tests/sim/certadm
$(BUILD)/sim/libcertadm.so: $(CERTADM_DIR)/certadm.c $(CERTADM_DIR)/proto.c $(CERTADM_DIR)/certsim.h
	mkdir -p $(dir $@)
	gcc $(CFLAGS_SIM) -shared -o $@ $(CERTADM_DIR)/certadm.c $(CERTADM_DIR)/proto.c -lpthread
	ln -sfn libcertadm.so $(BUILD)/sim/certadm.dll
$(BUILD)/sim/certsvc-sim: $(CERTADM_DIR)/certsvc.c $(CERTADM_DIR)/proto.c $(CERTADM_DIR)/certsim.h $(SIM_SRC) $(SIM_HDR)
	mkdir -p $(dir $@)
	gcc $(CFLAGS_SIM) -o $@ $(CERTADM_DIR)/certsvc.c $(CERTADM_DIR)/proto.c $(SIM_SRC) -lm

# ntdsbcli.dll (the AD DS backup client) and the DC backup server it talks to; they reuse the certadm
# simulator's framing (proto.c). Two library folders stand in for a Windows without the API: one without
# ntdsbcli.dll, one whose ntdsbcli.dll has no backup exports (use either in place of build/sim).
NTDS_DIR := tests/sim/ntdsbcli
NTDS_HDR := $(NTDS_DIR)/ntdssim.h $(CERTADM_DIR)/certsim.h
NTDS_LINKS := esent.dll libesent.so certadm.dll libcertadm.so
NTDS_TARGETS := $(BUILD)/sim/libntdsbcli.so $(BUILD)/sim/ntdssvc-sim $(BUILD)/sim/no-ntdsbcli/.done \
	$(BUILD)/sim/ntdsbcli-noexports/ntdsbcli.dll
sim: $(NTDS_TARGETS)
$(BUILD)/sim/libntdsbcli.so: $(NTDS_DIR)/ntdsbcli.c $(CERTADM_DIR)/proto.c $(NTDS_HDR)
	mkdir -p $(dir $@)
	gcc $(CFLAGS_SIM) -shared -o $@ $(NTDS_DIR)/ntdsbcli.c $(CERTADM_DIR)/proto.c -lpthread
	ln -sfn libntdsbcli.so $(BUILD)/sim/ntdsbcli.dll
$(BUILD)/sim/ntdssvc-sim: $(NTDS_DIR)/ntdssvc.c $(CERTADM_DIR)/proto.c $(NTDS_HDR) $(SIM_SRC) $(SIM_HDR)
	mkdir -p $(dir $@)
	gcc $(CFLAGS_SIM) -o $@ $(NTDS_DIR)/ntdssvc.c $(CERTADM_DIR)/proto.c $(SIM_SRC) -lm
$(BUILD)/sim/no-ntdsbcli/.done: $(BUILD)/sim/libesent.so $(BUILD)/sim/libcertadm.so
	mkdir -p $(dir $@)
	for f in $(NTDS_LINKS); do ln -sfn ../$$f $(dir $@)$$f; done
	touch $@
$(BUILD)/sim/ntdsbcli-noexports/ntdsbcli.dll: $(NTDS_DIR)/stub.c $(BUILD)/sim/no-ntdsbcli/.done
	mkdir -p $(dir $@)
	gcc $(CFLAGS_SIM) -shared -o $@ $(NTDS_DIR)/stub.c
	ln -sfn ntdsbcli.dll $(dir $@)libntdsbcli.so
	for f in $(NTDS_LINKS); do ln -sfn ../$$f $(dir $@)$$f; done

engine: $(BUILD)/engine/EseEngine.dll $(BUILD)/sim/EseSimHost.exe
$(BUILD)/engine/EseEngine.dll: $(ENGINE_SRC)
	mkdir -p $(dir $@)
	$(MCS) -target:library -out:$@ $(ENGINE_SRC)
$(BUILD)/sim/EseSimHost.exe: $(ENGINE_SRC) $(wildcard tests/sim/host/*.cs)
	mkdir -p $(dir $@)
	$(MCS) -target:exe -out:$@ $(ENGINE_SRC) $(wildcard tests/sim/host/*.cs)

build: setup sim engine

# The PowerShell 7 and WinRM lanes spend their time in PowerShell (its start, and the engine's compile in each
# task), while the other suites run one process at a time: the two run side by side, each target's output
# printed when it ends. (A third job for the WinRM lane was measured slower: 13:44 before sanity and lint,
# against 14:23 for everything with two.)
LANES := tests/pwsh tests/lanes tests/winrm
test: build
	$(MAKE) --no-print-directory -j2 --output-sync=target test-lanes test-rest

test-lanes: build
	$(PY) -m pytest -q -p no:cacheprovider $(LANES)

test-rest: build
	$(PY) -m pytest -q -p no:cacheprovider $(addprefix --ignore=,$(LANES)) tests
	$(MAKE) --no-print-directory -j1 test-min sanity lint  # one after another, beside the lanes

# The lowest supported ansible-core builds every module's payload and runs the end-to-end playbooks too.
test-min: build $(VENV_MIN)/.done
	$(VENV_MIN)/bin/python -m pytest -q -p no:cacheprovider tests/static/test_payload.py tests/lanes tests/e2e

sanity: setup
	tools/sanity.sh $(VENV)

# The changelog and docs tools live in a virtualenv of their own, so that the test virtualenvs never change:
# made the way tools/bootstrap.sh makes those, with the machine's python3.
DOCS_VENV := $(BUILD)/venv-docs
DOCS_PYTHON ?= python3
docs-venv: $(DOCS_VENV)/.done
$(DOCS_VENV)/.done: requirements-docs.txt
	rm -rf $(DOCS_VENV)
	$(DOCS_PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/pip install -q --upgrade pip
	$(DOCS_VENV)/bin/pip install -q -r requirements-docs.txt
	touch $@

# ansible-lint on the role and playbooks; antsibull-changelog on the changelog fragments; antsibull-docs on the
# collection's docs (plugins, role and extra docs) as its docs site renders them; then the docs site itself.
lint: setup $(DOCS_VENV)/.done
	$(VENV)/bin/ansible-lint --profile production $(wildcard roles playbooks)
	$(DOCS_VENV)/bin/antsibull-changelog lint
	PATH=$(DOCS_VENV)/bin:$(VENV)/bin:$$PATH ANSIBLE_COLLECTIONS_PATH=$(BUILD)/collections \
	  antsibull-docs lint-collection-docs --plugin-docs .
	$(MAKE) --no-print-directory docs-site

# The collection's HTML docs site (antsibull-docs and Sphinx; any warning fails it): build/docs-site/html.
docs-site: setup $(DOCS_VENV)/.done
	tools/docs_site.sh $(DOCS_VENV) $(VENV)

# The main job against three simulated hosts (one with an injected fault); a fresh run each time.
demo: build
	rm -rf $(BUILD)/demo
	ESESIM_ROOT=$(BUILD)/demo $(PY) tests/sim/run_playbook.py -i tests/sim/demo-inventory.yml playbooks/backup.yml
	@echo "Backup sets: $(BUILD)/demo/unc/backup01/ese (\\\\backup01\\ese on the simulated hosts)"
	@echo "Reports:     $(BUILD)/demo/report.json (JSON), $(BUILD)/demo/report.xml (JUnit XML), $(BUILD)/demo/report.html (open in a browser)"

# Regenerates what is generated from data: the JET error catalog (tools/data/jet-errors.tsv) and
# docs/jet-policy.md (the policy tables). The tests run both with --check.
gen: setup
	$(PY) tools/gen_jet_errors.py
	$(PY) tools/gen_policy_docs.py

# The figures of docs/performance.md: each bench ends with one JSON line (ratio = limit / ours; goal >= 0.95).
bench: build
	for ps in 4096 32768; do for rt in mono $(if $(wildcard ../shared/tools/pwsh),coreclr); do \
	  $(PY) bench/stream.py --json --page-size $$ps --runtime $$rt || exit 1; done; done
	$(PY) bench/stream.py --json --rss 1024,8192
	for ps in 4096 32768; do $(PY) bench/verify.py --json --page-size $$ps || exit 1; done
	$(PY) bench/verify.py --json --pure-python --size-mib 64
	$(PY) bench/verify.py --json --rss

# docs/fleet.md's figures: the main job on 10, 50 and 200 simulated hosts at forks 10 and 50 (minutes).
bench-fleet: build
	$(PY) bench/fleet.py --json

clean:
	rm -rf $(BUILD)
