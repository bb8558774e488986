#!powershell

# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -CSharpUtil ansible_collections.ese.backup.plugins.module_utils._EsePrune
#AnsibleRequires -PowerShell ansible_collections.ese.backup.plugins.module_utils._EseModule

# Internal module of ese.backup.prune's action plugin, for sets on the Windows host's own disk. Mode scan
# returns the raw records of every set and the staging folders as the engine judges them; verify checks sets'
# files against their manifests; remove deletes the sets the controller's planner chose, in its order, each
# only while its manifest.json is the one scanned. The plan itself is made on the controller (docs/prune.md).

$spec = @{
    options = @{
        mode = @{ type = 'str'; required = $true; choices = 'scan', 'verify', 'remove' }
        path = @{ type = 'path'; required = $true }
        sets = @{ type = 'list'; elements = 'raw'; default = @() }
        staging = @{ type = 'list'; elements = 'raw'; default = @() }
        partial_older_than_hours = @{ type = 'float'; default = 24 }
    }
    supports_check_mode = $true
}

$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
Invoke-EseEntryPoint -Module $module -Type ([ansible_collections.ese.backup.plugins.module_utils._EsePrune.Prune]) -Method HostTask
