<#
.SYNOPSIS
    Local user accounts with group memberships, admin rights, password state and last
    logon (Windows).
.DESCRIPTION
    Usage (quiver passes parameters as separate arguments, never through a shell string):
        local-accounts.ps1          (no parameters)

    Output: CSV with a header line on stdout (same columns as the Linux and macOS entries):
        user,uid,gid,primary_group,groups,admin,home,home_exists,shell,login_shell,
        password_status,password_changed,full_name,last_logon
        uid              the account SID (gid, primary_group and shell stay empty)
        admin            member of the local Administrators group (S-1-5-32-544)
        home             profile folder from the ProfileList registry key
        login_shell      true when the account is enabled
        password_status  disabled | not_required (PasswordRequired = false) | required
    Uses Get-LocalUser, or Win32_UserAccount where the LocalAccounts module is missing.
    Group membership comes from Win32_GroupUser references; no SID is resolved against a
    domain controller. Read-only. Exit 0 on success, non-zero on bad parameters.
#>
[CmdletBinding()]
param()
Set-StrictMode -Version 2
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'SilentlyContinue'
if ([Console]::IsOutputRedirected) {
    try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding($false) } catch { }
}

function Write-Diag([string]$Message) { [Console]::Error.WriteLine("local-accounts: $Message") }
function Format-Time($Value) {
    if ($null -eq $Value) { return '' }
    try { return ([datetime]$Value).ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [Globalization.CultureInfo]::InvariantCulture) }
    catch { return '' }
}
$Columns = @('user', 'uid', 'gid', 'primary_group', 'groups', 'admin', 'home', 'home_exists', 'shell', 'login_shell',
    'password_status', 'password_changed', 'full_name', 'last_logon')
Write-Output ('"' + ($Columns -join '","') + '"')
function Write-Row([object[]]$Values) {
    $row = [ordered]@{}
    for ($i = 0; $i -lt $Columns.Count; $i++) {
        $v = ''
        if ($i -lt $Values.Count -and $null -ne $Values[$i]) { $v = [string]$Values[$i] }
        $row[$Columns[$i]] = $v
    }
    ([pscustomobject]$row | ConvertTo-Csv -NoTypeInformation) | Select-Object -Skip 1
}

# Local group memberships: user name -> list of groups; which groups are Administrators.
$computer = [string]$env:COMPUTERNAME
$groupsOf = @{}
$adminGroup = ''
foreach ($g in @(Get-CimInstance -ClassName Win32_Group -Filter 'LocalAccount = True' -ErrorAction SilentlyContinue)) {
    if ([string]$g.SID -eq 'S-1-5-32-544') { $adminGroup = [string]$g.Name }
    $filter = "GroupComponent = ""Win32_Group.Domain='$($g.Domain)',Name='$($g.Name)'"""
    foreach ($m in @(Get-CimInstance -ClassName Win32_GroupUser -Filter $filter -ErrorAction SilentlyContinue)) {
        $member = $null
        try { $member = $m.PartComponent } catch { }
        if ($null -eq $member) { continue }
        if ([string]$member.Domain -ne $computer) { continue }
        $n = [string]$member.Name
        if (-not $groupsOf.ContainsKey($n)) { $groupsOf[$n] = New-Object System.Collections.ArrayList }
        [void]$groupsOf[$n].Add([string]$g.Name)
    }
}

$profiles = @{}
foreach ($p in @(Get-ChildItem -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList' -ErrorAction SilentlyContinue)) {
    try { $profiles[$p.PSChildName] = [string](Get-ItemProperty -LiteralPath $p.PSPath -ErrorAction Stop).ProfileImagePath } catch { }
}

function Write-Account([string]$Name, [string]$Sid, [bool]$Enabled, [bool]$PasswordRequired, $PasswordLastSet, [string]$FullName, $LastLogon) {
    $groups = @()
    if ($groupsOf.ContainsKey($Name)) { $groups = @($groupsOf[$Name]) }
    $admin = 'false'
    if ($adminGroup -and ($groups -contains $adminGroup)) { $admin = 'true' }
    $homeDir = ''
    $homeExists = 'false'
    if ($profiles.ContainsKey($Sid)) {
        $homeDir = [Environment]::ExpandEnvironmentVariables($profiles[$Sid])
        if (Test-Path -LiteralPath $homeDir -PathType Container) { $homeExists = 'true' }
    }
    $status = 'required'
    if (-not $PasswordRequired) { $status = 'not_required' }
    if (-not $Enabled) { $status = 'disabled' }
    Write-Row @($Name, $Sid, '', '', ($groups -join ','), $admin, $homeDir, $homeExists, '', ([string]$Enabled).ToLowerInvariant(),
        $status, (Format-Time $PasswordLastSet), $FullName, (Format-Time $LastLogon))
}

if (Get-Command -Name Get-LocalUser -ErrorAction SilentlyContinue) {
    foreach ($u in @(Get-LocalUser -ErrorAction SilentlyContinue)) {
        Write-Account ([string]$u.Name) ([string]$u.SID) ([bool]$u.Enabled) ([bool]$u.PasswordRequired) $u.PasswordLastSet ([string]$u.FullName) $u.LastLogon
    }
} else {
    Write-Diag 'Get-LocalUser not available; using Win32_UserAccount (no password or logon times)'
    foreach ($u in @(Get-CimInstance -ClassName Win32_UserAccount -Filter 'LocalAccount = True' -ErrorAction SilentlyContinue)) {
        Write-Account ([string]$u.Name) ([string]$u.SID) (-not [bool]$u.Disabled) ([bool]$u.PasswordRequired) $null ([string]$u.FullName) $null
    }
}
exit 0
