# Copyright: Contributors to the ese.backup collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Privilege

# What every ese.backup module does after Ansible.Basic has validated its options: call one engine
# entry point and hand its facts back. Policy (changed, failed, msg) is the action plugin's.

Function Test-EseWindowsHost {
    <# True on Windows: Windows PowerShell 5.1 (Desktop) or PowerShell 7 with $IsWindows. #>
    $PSVersionTable.PSEdition -eq 'Desktop' -or $IsWindows
}

Function Invoke-EseEntryPoint {
    <#
    .SYNOPSIS
    Calls a static engine entry point with the module's options and exits the module with its facts.

    .PARAMETER Module
    The Ansible.Basic.AnsibleModule.

    .PARAMETER Type
    The engine class, for example [ansible_collections.ese.backup.plugins.module_utils.EseEngine.Engine].

    .PARAMETER Method
    The entry point: (IDictionary args, bool checkMode) or (IDictionary args).

    .PARAMETER Privilege
    Token privileges the call needs, enabled for the call only. Privileges are a Windows notion: off
    Windows the step is skipped and named in the result's windows_only_skipped.
    #>
    param(
        [Parameter(Mandatory = $true)][Object]$Module,
        [Parameter(Mandatory = $true)][Type]$Type,
        [Parameter(Mandatory = $true)][String]$Method,
        [String[]]$Privilege = @()
    )
    $entry = $Type.GetMethod($Method, [Type[]]@([System.Collections.IDictionary], [bool]))
    $callArgs = @($Module.Params, $Module.CheckMode)
    if ($null -eq $entry) {
        $entry = $Type.GetMethod($Method, [Type[]]@([System.Collections.IDictionary]))
        $callArgs = @(, $Module.Params)
    }
    if ($null -eq $entry) {
        $Module.FailJson("ese.backup: the engine has no entry point $($Type.FullName)::$Method")
    }

    $skipped = [System.Collections.Generic.List[String]]@()
    $enabler = $null
    if ($Privilege.Count -gt 0) {
        if (Test-EseWindowsHost) {
            $process = [Ansible.Privilege.PrivilegeUtil]::GetCurrentProcess()
            $held = [Ansible.Privilege.PrivilegeUtil]::GetAllPrivilegeInfo($process)
            foreach ($name in $Privilege) {
                if (-not $held.ContainsKey($name)) {
                    $Module.Warn("The connection user does not hold $name; the engine may fail with access denied")
                }
            }
            $enabler = New-Object -TypeName Ansible.Privilege.PrivilegeEnabler -ArgumentList $false, $Privilege
        }
        else {
            foreach ($name in $Privilege) { $skipped.Add("privilege $name") }
        }
    }
    try {
        $facts = $entry.Invoke($null, [Object[]]$callArgs)
    }
    catch {
        # Entry points return their failures as facts; this is an engine defect. Name the innermost cause.
        $cause = $_.Exception
        while ($null -ne $cause.InnerException) { $cause = $cause.InnerException }
        $Module.FailJson("ese.backup engine: $Method raised $($cause.GetType().FullName): $($cause.Message)", $_)
    }
    finally {
        if ($null -ne $enabler) { $enabler.Dispose() }
    }

    foreach ($fact in $facts.GetEnumerator()) {
        if ($fact.Key -eq 'warnings') {
            # Ansible.Basic replaces Result.warnings with what Warn() collected: pass each one through.
            foreach ($warning in $fact.Value) { $Module.Warn([String]$warning) }
            continue
        }
        $Module.Result[$fact.Key] = $fact.Value
    }
    $Module.Result['windows_only_skipped'] = $skipped.ToArray()
    $Module.ExitJson()
}

Export-ModuleMember -Function 'Invoke-EseEntryPoint', 'Test-EseWindowsHost'
