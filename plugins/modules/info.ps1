#!powershell

# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -CSharpUtil ansible_collections.ese.backup.plugins.module_utils._EseSession
#AnsibleRequires -PowerShell ansible_collections.ese.backup.plugins.module_utils._EseModule

# Read-only: header facts of databases, the backup sets under a directory, and the copies in flight. The action plugin
# (plugins/action/info.py) passes the result through and names a failed JET call.

$spec = @{
    options = @{
        databases = @{ type = 'list'; elements = 'path' }
        backup_path = @{ type = 'path' }
        sessions = @{ type = 'bool' }
        progress = @{ type = 'path' }
    }
    required_one_of = @(, @('databases', 'backup_path', 'sessions', 'progress'))
    supports_check_mode = $true
}

$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
Invoke-EseEntryPoint -Module $module -Type ([ansible_collections.ese.backup.plugins.module_utils._EseSession.Session]) -Method Info
