#!powershell
# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Test-only module: its payload is what the simulated host must understand on every ansible-core.
#AnsibleRequires -CSharpUtil Ansible.Basic
$module = [Ansible.Basic.AnsibleModule]::Create($args, @{ options = @{ marker = @{ type = 'str' } } })
$module.ExitJson()
