# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Runs one engine entry point under PowerShell 7 (CoreCLR), the engine compiled by ansible-core's Add-CSharpType
# as a module payload compiles it. Reads {"entry", "check_mode", "args"} on stdin; prints the result as JSON.
param(
    [Parameter(Mandatory = $true)][String]$AddType,
    [Parameter(Mandatory = $true)][String]$Utils
)
$ErrorActionPreference = 'Stop'
Import-Module -Name $AddType
$sources = @(Get-ChildItem -LiteralPath $Utils -Filter '*.cs' | Sort-Object -Property Name | ForEach-Object {
        Get-Content -Raw -LiteralPath $_.FullName
    })
$assembly = Add-CSharpType -References $sources -PassThru -TempPath ([IO.Path]::GetTempPath())
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json -AsHashtable
$engine = $assembly.GetType('ansible_collections.ese.backup.plugins.module_utils.EseEngine.Engine', $true)
$result = $engine::($request.entry).Invoke($request.args, [bool]$request.check_mode)
$result | ConvertTo-Json -Depth 20 -Compress
