#!powershell

# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -CSharpUtil Ansible.Privilege
#AnsibleRequires -CSharpUtil ..module_utils._EseRestore

# Thin module: the engine checks the chain and the targets, restores (JetExternalRestore2W) or drills,
# and returns facts; the action plugin (plugins/action/restore.py) applies the restore policy table.

$spec = @{
    options = @{
        backup_set = @{ type = 'path'; required = $true }
        incrementals = @{ type = 'list'; elements = 'path'; default = @() }
        restore_map = @{
            type = 'list'
            elements = 'dict'
            options = @{
                source = @{ type = 'str'; required = $true }
                target = @{ type = 'path'; required = $true }
            }
        }
        log_path = @{ type = 'path' }
        system_path = @{ type = 'path' }
        force = @{ type = 'bool'; default = $false }
        service = @{ type = 'str' }
        drill = @{ type = 'bool'; default = $false }
        scratch = @{ type = 'path' }
        instance_name = @{ type = 'str'; default = 'ese.backup.restore' }
    }
    mutually_exclusive = @(
        , @('drill', 'restore_map')
    )
    supports_check_mode = $true
}

$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)

# Writing over a database file that the backup operator does not own needs SeRestorePrivilege.
$privilege = New-Object -TypeName Ansible.Privilege.PrivilegeEnabler -ArgumentList $false, 'SeRestorePrivilege', 'SeBackupPrivilege'
try {
    $facts = [ansible_collections.ese.backup.plugins.module_utils._EseRestore.Restore]::Run($module.Params, $module.CheckMode)
}
finally {
    $privilege.Dispose()
}

foreach ($entry in $facts.GetEnumerator()) {
    $module.Result[$entry.Key] = $entry.Value
}
$module.ExitJson()
