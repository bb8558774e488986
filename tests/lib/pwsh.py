# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finds PowerShell 7 for the suites that run the real .ps1 modules (the PowerShell 7 and WinRM lanes).

Order: ``pwsh`` on PATH (Microsoft's packages), then the copy that ``../shared/tools/pwsh/install.sh``
unpacks into ``build/pwsh``. Where neither exists the suites skip, saying how to install PowerShell;
where ``../shared/tools/pwsh`` exists a skip is a failure, because CI must run those lanes.
"""
import glob
import os
import shutil
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUNDLED = os.path.join(os.path.dirname(REPO), "shared", "tools", "pwsh", "install.sh")
UNPACK_TO = os.path.join(REPO, "build", "pwsh")
HOW_TO_INSTALL = ("PowerShell 7 (pwsh) is not installed: install it from Microsoft's packages "
                  "(https://learn.microsoft.com/powershell/scripting/install/installing-powershell-on-linux) "
                  "or put ../shared/tools/pwsh beside the checkout")


def find_pwsh():
    """Path of a pwsh that starts, or None."""
    found = shutil.which("pwsh")
    if found:
        return found
    if os.path.exists(BUNDLED):
        out = subprocess.run(["bash", BUNDLED, UNPACK_TO], capture_output=True, text=True, timeout=300)
        path = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else ""
        if path and os.access(path, os.X_OK):
            return path
        pytest.fail("../shared/tools/pwsh/install.sh failed: %s" % (out.stderr or out.stdout)[-2000:])
    return None


def require_pwsh():
    """pwsh's path; skips without it, and fails instead where the bundled copy should have been used."""
    path = find_pwsh()
    if path:
        return path
    if os.path.exists(BUNDLED):
        pytest.fail("../shared/tools/pwsh exists but no pwsh could be started: " + HOW_TO_INSTALL)
    pytest.skip(HOW_TO_INSTALL)


def interpreter(path):
    """(pwsh binary, environment for it) for ``ansible_pwsh_interpreter`` and the WinRS stand-in.

    Ansible's exec wrapper starts a second PowerShell whenever the interpreter's folder is not the running
    PowerShell's ``$PSHOME``. The bundled copy's ``pwsh`` is a launcher script beside ``app/`` (the real
    ``$PSHOME``), so naming it would start two PowerShells per task: it is resolved to ``app/pwsh``, with
    the variables the launcher sets. Any other pwsh (Microsoft's packages) is used as found."""
    real = os.path.realpath(path)
    home = os.path.dirname(real)
    binary = os.path.join(home, "app", "pwsh")
    # Each task is a PowerShell that lives seconds: no background GC thread and no profile-guided tiering
    # (measured: about 10% less CPU per task, bench-free; they change no behaviour of the modules).
    env = {"DOTNET_gcConcurrent": "0", "DOTNET_TieredPGO": "0"}
    if not (os.access(binary, os.X_OK) and os.path.isdir(os.path.join(home, "dotnet"))):
        return path, env
    env.update({"DOTNET_ROOT": os.path.join(home, "dotnet"), "POWERSHELL_TELEMETRY_OPTOUT": "1",
                "POWERSHELL_UPDATECHECK": "Off", "DOTNET_CLI_TELEMETRY_OPTOUT": "1"})
    if not glob.glob("/usr/lib/*/libicuuc.so.*") + glob.glob("/usr/lib/libicuuc.so.*"):
        env["DOTNET_SYSTEM_GLOBALIZATION_INVARIANT"] = "1"
    return binary, env
