#!powershell

# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -CSharpUtil ansible_collections.ese.backup.plugins.module_utils._EseRestore
#AnsibleRequires -PowerShell ansible_collections.ese.backup.plugins.module_utils._EseModule

# Thin module: the engine checks the chain and the targets, restores (JetExternalRestore2W; for a set taken
# with source adcs, registers the restore with the stopped CA through certadm.dll) or drills, and returns facts;
# the action plugin (plugins/action/restore.py) applies the restore policy table.

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
        to_original_paths = @{ type = 'bool'; default = $false }
        force = @{ type = 'bool'; default = $false }
        service = @{ type = 'str' }
        drill = @{ type = 'bool'; default = $false }
        scratch = @{ type = 'path' }
        instance_name = @{ type = 'str'; default = 'ese.backup.restore' }
    }
    supports_check_mode = $true
}

$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
Invoke-EseEntryPoint -Module $module -Type ([ansible_collections.ese.backup.plugins.module_utils._EseRestore.Restore]) -Method Run -Privilege 'SeRestorePrivilege', 'SeBackupPrivilege'
