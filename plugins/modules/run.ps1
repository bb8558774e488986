#!powershell

# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -CSharpUtil ansible_collections.ese.backup.plugins.module_utils.EseEngine
#AnsibleRequires -PowerShell ansible_collections.ese.backup.plugins.module_utils._EseModule

# Thin module: the engine does the work and returns facts; the action plugin (plugins/action/run.py)
# turns them into changed/failed/msg through the policy table in plugin_utils/_jet_policy.py.

$spec = @{
    options = @{
        databases = @{ type = 'list'; elements = 'path'; required = $true }
        log_path = @{ type = 'path'; required = $true }
        system_path = @{ type = 'path' }
        base_name = @{ type = 'str'; default = 'edb' }
        page_size = @{ type = 'int'; choices = 2048, 4096, 8192, 16384, 32768 }
        type = @{ type = 'str'; default = 'full'; choices = 'full', 'copy', 'incremental', 'differential' }
        dest = @{ type = 'path'; required = $true }
        set_name = @{ type = 'str' }
        circular_logging = @{ type = 'bool'; default = $false }
        legacy_file_names = @{ type = 'int'; default = 3 }
        buffer_size = @{ type = 'int'; default = 4194304 }
        instance_name = @{ type = 'str'; default = 'ese.backup' }
    }
    supports_check_mode = $true
}

$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
Invoke-EseEntryPoint -Module $module -Type ([ansible_collections.ese.backup.plugins.module_utils.EseEngine.Engine]) -Method Run -Privilege 'SeBackupPrivilege'
