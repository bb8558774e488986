#!powershell

# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -CSharpUtil ansible_collections.ese.backup.plugins.module_utils._EseSession
#AnsibleRequires -PowerShell ansible_collections.ese.backup.plugins.module_utils._EseModule

# Thin module: the engine starts (or finds) the session host and returns facts; the action plugin
# (plugins/action/begin.py) turns them into changed/failed/msg through plugin_utils/_jet_policy.py.

# As for ese.backup.run, the own-instance options are required or defaulted for source instance only (the
# engine's defaults, Options.Parse): a service source (adcs, adds) names its files, and the engine refuses them
# there, naming the option.

$spec = @{
    options = @{
        session = @{ type = 'str'; required = $true }
        source = @{ type = 'str'; default = 'instance'; choices = 'instance', 'adcs', 'adds' }
        server = @{ type = 'str' }
        databases = @{ type = 'list'; elements = 'path' }
        log_path = @{ type = 'path' }
        system_path = @{ type = 'path' }
        base_name = @{ type = 'str' }
        page_size = @{ type = 'int'; choices = 2048, 4096, 8192, 16384, 32768 }
        type = @{ type = 'str'; default = 'full'; choices = 'full', 'copy', 'incremental', 'differential' }
        circular_logging = @{ type = 'bool' }
        legacy_file_names = @{ type = 'int' }
        instance_name = @{ type = 'str' }
        idle_timeout = @{ type = 'int'; default = 3600 }
        start_timeout = @{ type = 'int'; default = 60 }
    }
    required_if = @(
        , @('source', 'instance', @('databases', 'log_path'))
    )
    supports_check_mode = $true
}

$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
Invoke-EseEntryPoint -Module $module -Type ([ansible_collections.ese.backup.plugins.module_utils._EseSession.Session]) -Method Begin
