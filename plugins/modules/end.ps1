#!powershell

# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -CSharpUtil ansible_collections.ese.backup.plugins.module_utils._EseSession
#AnsibleRequires -PowerShell ansible_collections.ese.backup.plugins.module_utils._EseModule

# Thin module: the session host calls JetEndExternalBackupInstance2 and returns the End call with the
# journal; the action plugin (plugins/action/end.py) decides the result with the END table.

$spec = @{
    options = @{
        session = @{ type = 'str'; required = $true }
        mode = @{ type = 'str'; default = 'normal'; choices = 'normal', 'abort' }
        truncate_done = @{ type = 'bool'; default = $false }
    }
    supports_check_mode = $true
}

$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
Invoke-EseEntryPoint -Module $module -Type ([ansible_collections.ese.backup.plugins.module_utils._EseSession.Session]) -Method End
