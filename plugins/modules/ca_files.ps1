#!powershell

# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -CSharpUtil ansible_collections.ese.backup.plugins.module_utils._EseCaFiles
#AnsibleRequires -PowerShell ansible_collections.ese.backup.plugins.module_utils._EseModule

# Internal module of the ese.backup.ca_backup role: what a CA's backup through certadm.dll leaves out (the
# CertSvc\Configuration registry key, CAPolicy.inf, the CA certificate and key as a PFX), written into a private
# temporary folder for the backup's include_files; mode cleanup deletes that folder.

$spec = @{
    options = @{
        mode = @{ type = 'str'; default = 'collect'; choices = 'collect', 'cleanup' }
        ca_name = @{ type = 'str' }
        key = @{ type = 'bool'; default = $false }
        key_password = @{ type = 'str'; no_log = $true }
        temp_path = @{ type = 'path' }
        path = @{ type = 'path' }
    }
    supports_check_mode = $true
}

$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
Invoke-EseEntryPoint -Module $module -Type ([ansible_collections.ese.backup.plugins.module_utils._EseCaFiles.CaFiles]) -Method HostTask
