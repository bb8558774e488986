# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTML report of playbooks/backup.yml, rendered by a real headless Chromium.

The shipped playbook runs against three simulated hosts (one with a page checksum error injected on its
first database read); Chromium then renders report.html: the DOM after rendering (--dump-dom) and a
screenshot (build/report-screenshot.png). tools/bootstrap.sh installs Debian's chromium where apt-get
works; the test skips only where there is neither a chromium binary nor a usable apt-get.
"""
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from simulation import REPO, SHARE, SRU_DIR

SCREENSHOT = os.path.join(REPO, "build", "report-screenshot.png")
HOW_TO_INSTALL = ("install Debian's chromium (apt-get install chromium, which tools/bootstrap.sh does where "
                  "apt-get works) or put a Chromium build on PATH as 'chromium'")


def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    apt_usable = shutil.which("apt-get") and (os.geteuid() == 0 or shutil.which("sudo"))
    if apt_usable:
        pytest.fail("no chromium binary although apt-get is usable here: " + HOW_TO_INSTALL)
    pytest.skip("no chromium binary and no usable apt-get: " + HOW_TO_INSTALL)


class Dom(HTMLParser):
    """Every element of the rendered DOM as (tag, attributes, its own text), plus the text under each host."""

    def __init__(self):
        super().__init__()
        self.elements, self.stack = [], []

    def handle_starttag(self, tag, attrs):
        element = (tag, dict(attrs), [])
        self.elements.append(element)
        if tag not in ("br", "meta", "rect", "img", "input", "link"):
            self.stack.append(element)

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        for element in self.stack:
            element[2].append(data)

    def find(self, tag, cls=None):
        return [(t, a, "".join(text)) for t, a, text in self.elements
                if t == tag and (cls is None or cls in a.get("class", "").split())]


def run_backup_yml(sim):
    sim.add_host("web01")
    sim.add_host("web02", fixture="srum-win11-dirty")
    sim.add_host("web03", esesim_faults=[{"api": "JetReadFileInstance", "call": 1, "err": -1018}])
    inventory = {"all": {"children": {
        "ese_hosts": {"hosts": sim.hosts, "vars": {
            "ese_databases": [SRU_DIR + "\\SRUDB.dat"], "ese_log_path": SRU_DIR, "ese_base_name": "SRU",
            "ese_backup_share": SHARE}},
        "backup_server": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "backup_server_path": os.path.join(sim.root, "unc", "backup01", "ese"),
            "report_path": os.path.join(sim.root, "report.json")}}}}}}
    res = sim.run(os.path.join(REPO, "playbooks", "backup.yml"), inventory=inventory)
    assert res.rc == 0, res.stdout
    return res


def test_backup_yml_html_report_in_a_headless_browser(sim, tmp_path):
    browser = chromium()
    res = run_backup_yml(sim)
    paths = [os.path.join(sim.root, "report." + ext) for ext in ("json", "xml", "html")]
    for path in paths:
        assert os.stat(path).st_mode & 0o777 == 0o600, path
    with open(paths[0]) as f:
        assert [e["status"] for e in json.load(f)] == ["ok", "ok", "failed"]
    junit = ET.parse(paths[1]).getroot()
    assert [c.get("classname") for c in junit.iter("testcase")] == ["web01", "web02", "web03"]
    shown = res.task("localhost", "Show the report")["result"]["msg"]
    assert [line.split(":")[0] for line in shown[:3]] == ["web01", "web02", "web03"]
    assert shown[2].startswith("web03: failed - JET_errReadVerifyFailure (-1018)") and shown[3:] == [
        "JSON:  " + paths[0], "JUnit: " + paths[1], "HTML:  " + paths[2]]

    chrome = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=%s" % (tmp_path / "profile")]
    url = "file://" + paths[2]
    dom = subprocess.run(chrome + ["--dump-dom", url], capture_output=True, text=True, timeout=180, check=True).stdout
    parsed = Dom()
    parsed.feed(dom)

    hosts = {a["data-host"]: (a["class"].split(), text) for _, a, text in parsed.find("section", "host")}
    assert sorted(hosts) == ["web01", "web02", "web03"]
    assert "status-failed" in hosts["web03"][0] and "failed" in hosts["web03"][1]
    assert "status-ok" in hosts["web01"][0] and "status-ok" in hosts["web02"][0]
    for host, (_, text) in hosts.items():
        assert "Retention" in text and "not configured" in text, host
    assert "1 chain, continuous, healthy" in hosts["web01"][1]
    failures = parsed.find("div", "failure")
    assert [a["data-host"] for _, a, _ in failures] == ["web03"]
    assert "JET_errReadVerifyFailure (-1018)" in failures[0][2] and "JetReadFileInstance" in failures[0][2]

    assert len(parsed.find("svg", "chart")) == 1
    bars = parsed.find("rect", "bar")
    assert sorted(a["data-host"] for _, a, _ in bars) == ["web01", "web02", "web03"]
    sizes = dict((a["data-host"], a["data-size"]) for _, a, _ in bars)
    assert int(sizes["web01"]) > 0 and int(sizes["web02"]) > 0 and sizes["web03"] == ""

    os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
    if os.path.exists(SCREENSHOT):
        os.remove(SCREENSHOT)
    subprocess.run(chrome + ["--screenshot=%s" % SCREENSHOT, "--window-size=1280,1600", url],
                   capture_output=True, text=True, timeout=180, check=True)
    with open(SCREENSHOT, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(SCREENSHOT) > 10000
