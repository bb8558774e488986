#!powershell
# Test-only module: its payload is what the simulated host must understand on every ansible-core.
#AnsibleRequires -CSharpUtil Ansible.Basic
$module = [Ansible.Basic.AnsibleModule]::Create($args, @{ options = @{ marker = @{ type = 'str' } } })
$module.ExitJson()
