#!powershell

# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic

# Test helper: finds the local CA of AD CS without certutil, from the CA service's configuration in the
# registry (HKLM:\SYSTEM\CurrentControlSet\Services\CertSvc\Configuration: Active is the CA's name, and
# DBDirectory / DBLogDirectory where its database <name>.edb and its logs are). Reads only.

$spec = @{
    options = @{}
    supports_check_mode = $true
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)

$key = 'HKLM:\SYSTEM\CurrentControlSet\Services\CertSvc\Configuration'
$service = Get-Service -Name CertSvc -ErrorAction SilentlyContinue
if (-not $service) {
    $module.FailJson("this host has no CA: the service CertSvc (AD CS) is not installed; the adcs target needs a CA")
}
$config = Get-ItemProperty -LiteralPath $key -ErrorAction SilentlyContinue
if (-not $config -or -not $config.Active) {
    $module.FailJson("CertSvc is installed but $key has no Active value: the CA is not configured")
}
$name = [string]$config.Active
$dbDir = [Environment]::ExpandEnvironmentVariables([string]$config.DBDirectory)
$logDir = [Environment]::ExpandEnvironmentVariables([string]$config.DBLogDirectory)
if (-not $dbDir) { $dbDir = Join-Path $env:SystemRoot 'System32\CertLog' }
if (-not $logDir) { $logDir = $dbDir }

$module.Result.ca = @{
    name = $name
    database = Join-Path $dbDir ($name + '.edb')
    log_path = $logDir
    service_status = [string]$service.Status
}
$module.ExitJson()
