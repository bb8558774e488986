#!powershell

# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -CSharpUtil ansible_collections.ese.backup.plugins.module_utils._EseSession
#AnsibleRequires -PowerShell ansible_collections.ese.backup.plugins.module_utils._EseModule

# Internal module of ese.backup.begin's action plugin. Mode serve runs the session host; the action
# plugin starts it with Ansible's async wrapper, which runs it in a process outside the WinRM shell's
# job object, so the ESE instance outlives the task. Mode wait returns once the host has reported.

$spec = @{
    options = @{
        mode = @{ type = 'str'; required = $true; choices = 'serve', 'wait' }
        session = @{ type = 'str'; required = $true }
        serve_file = @{ type = 'path' }
        token = @{ type = 'str' }
        timeout = @{ type = 'int'; default = 60 }
    }
    required_if = @(, @('mode', 'serve', @('serve_file')))
    supports_check_mode = $false
}

$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
Invoke-EseEntryPoint -Module $module -Type ([ansible_collections.ese.backup.plugins.module_utils._EseSession.Session]) -Method HostTask -Privilege 'SeBackupPrivilege'
