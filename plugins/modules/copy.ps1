#!powershell

# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -CSharpUtil ansible_collections.ese.backup.plugins.module_utils._EseSession
#AnsibleRequires -PowerShell ansible_collections.ese.backup.plugins.module_utils._EseModule

# Thin module: the session host streams the files; the action plugin (plugins/action/copy.py) applies
# the copy policy table in plugin_utils/_jet_policy.py.

$spec = @{
    options = @{
        session = @{ type = 'str'; required = $true }
        dest = @{ type = 'path'; required = $true }
        set_name = @{ type = 'str' }
        databases = @{ type = 'bool'; default = $true }
        logs = @{ type = 'bool'; default = $true }
        buffer_size = @{ type = 'int'; default = 4194304 }
        include_files = @{
            type = 'list'
            elements = 'dict'
            options = @{
                path = @{ type = 'path'; required = $true }
                role = @{ type = 'str'; required = $true; choices = 'ca_dynamic', 'ca_registry', 'ca_policy', 'ca_key' }
            }
        }
    }
    supports_check_mode = $true
}

$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
Invoke-EseEntryPoint -Module $module -Type ([ansible_collections.ese.backup.plugins.module_utils._EseSession.Session]) -Method Copy
