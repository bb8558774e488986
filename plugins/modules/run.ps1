#!powershell

# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -CSharpUtil ansible_collections.ese.backup.plugins.module_utils.EseEngine
#AnsibleRequires -PowerShell ansible_collections.ese.backup.plugins.module_utils._EseModule

# Thin module: the engine does the work and returns facts; the action plugin (plugins/action/run.py)
# turns them into changed/failed/msg through the policy table in plugin_utils/_jet_policy.py.

# The own-instance options (databases, log_path, ...) are required or defaulted for source instance only: a
# service source (adcs, adds) names its files and runs its own ESE instance, and the engine refuses them there,
# naming the option. Their defaults for source instance are the engine's (Options.Parse), so that the engine
# sees which were given.
$spec = @{
    options = @{
        source = @{ type = 'str'; default = 'instance'; choices = 'instance', 'adcs', 'adds' }
        server = @{ type = 'str' }
        databases = @{ type = 'list'; elements = 'path' }
        log_path = @{ type = 'path' }
        system_path = @{ type = 'path' }
        base_name = @{ type = 'str' }
        page_size = @{ type = 'int'; choices = 2048, 4096, 8192, 16384, 32768 }
        type = @{ type = 'str'; default = 'full'; choices = 'full', 'copy', 'incremental', 'differential' }
        dest = @{ type = 'path'; required = $true }
        set_name = @{ type = 'str' }
        circular_logging = @{ type = 'bool' }
        legacy_file_names = @{ type = 'int' }
        buffer_size = @{ type = 'int'; default = 4194304 }
        instance_name = @{ type = 'str' }
        include_files = @{
            type = 'list'
            elements = 'dict'
            options = @{
                path = @{ type = 'path'; required = $true }
                role = @{ type = 'str'; required = $true; choices = 'ca_dynamic', 'ca_registry', 'ca_policy', 'ca_key' }
            }
        }
    }
    required_if = @(
        , @('source', 'instance', @('databases', 'log_path'))
    )
    supports_check_mode = $true
}

$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
Invoke-EseEntryPoint -Module $module -Type ([ansible_collections.ese.backup.plugins.module_utils.EseEngine.Engine]) -Method Run -Privilege 'SeBackupPrivilege'
