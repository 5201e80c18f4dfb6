<#
.SYNOPSIS
    Installed programs (Uninstall registry keys, machine and per-user), Store/Appx
    packages and installed updates (Windows).
.DESCRIPTION
    Usage (quiver passes parameters as separate arguments, never through a shell string):
        installed-software.ps1          (no parameters)

    Output: CSV with a header line on stdout (same columns as the Linux and macOS entries):
        source,name,version,arch,vendor,install_time,status,location
        source  uninstall_hklm, uninstall_hkcu (per loaded user hive, status names the SID),
                appx, hotfix
        status  system_component for entries hidden from Programs and Features
    Win32_Product is deliberately not used: querying it makes Windows Installer verify
    and repair every MSI package, which changes the system and floods the event log.
    Read-only. Exit 0 on success, non-zero on bad parameters.
#>
[CmdletBinding()]
param()
Set-StrictMode -Version 2
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'SilentlyContinue'
if ([Console]::IsOutputRedirected) {
    try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding($false) } catch { }
}

function Write-Diag([string]$Message) { [Console]::Error.WriteLine("installed-software: $Message") }
function Format-Time($Value) {
    if ($null -eq $Value) { return '' }
    try { return ([datetime]$Value).ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [Globalization.CultureInfo]::InvariantCulture) }
    catch { return '' }
}
$Columns = @('source', 'name', 'version', 'arch', 'vendor', 'install_time', 'status', 'location')
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
function Get-Prop($Object, [string]$Name) {
    $p = $Object.PSObject.Properties[$Name]
    if ($null -eq $p -or $null -eq $p.Value) { return '' }
    return [string]$p.Value
}

# InstallDate is usually yyyyMMdd; anything else is passed through.
function Format-InstallDate([string]$Raw) {
    if ($Raw -match '^\d{8}$') {
        try { return [datetime]::ParseExact($Raw, 'yyyyMMdd', [Globalization.CultureInfo]::InvariantCulture).ToString('yyyy-MM-dd') } catch { }
    }
    return $Raw
}

function Read-Uninstall([string]$Root, [string]$Source, [string]$Arch, [string]$Scope) {
    foreach ($k in @(Get-ChildItem -LiteralPath $Root -ErrorAction SilentlyContinue)) {
        $p = $null
        try { $p = Get-ItemProperty -LiteralPath $k.PSPath -ErrorAction Stop } catch { continue }
        $name = Get-Prop $p 'DisplayName'
        if (-not $name) { continue }
        $status = $Scope
        if ((Get-Prop $p 'SystemComponent') -eq '1') { $status = ($status + ' system_component').Trim() }
        $location = Get-Prop $p 'InstallLocation'
        if (-not $location) { $location = Get-Prop $p 'UninstallString' }
        Write-Row @($Source, $name, (Get-Prop $p 'DisplayVersion'), $Arch, (Get-Prop $p 'Publisher'),
            (Format-InstallDate (Get-Prop $p 'InstallDate')), $status, $location)
    }
}

$is64 = [Environment]::Is64BitOperatingSystem
$nativeArch = 'x86'
if ($is64) { $nativeArch = 'x64' }
Read-Uninstall 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall' 'uninstall_hklm' $nativeArch ''
if ($is64) { Read-Uninstall 'HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall' 'uninstall_hklm' 'x86' '' }
foreach ($h in @(Get-ChildItem -LiteralPath 'Registry::HKEY_USERS' -ErrorAction SilentlyContinue)) {
    if ($h.PSChildName -like '*_Classes') { continue }
    Read-Uninstall "Registry::HKEY_USERS\$($h.PSChildName)\Software\Microsoft\Windows\CurrentVersion\Uninstall" 'uninstall_hkcu' '' $h.PSChildName
}

if (Get-Command -Name Get-AppxPackage -ErrorAction SilentlyContinue) {
    $appx = @()
    try { $appx = @(Get-AppxPackage -AllUsers -ErrorAction Stop) }
    catch {
        Write-Diag "Get-AppxPackage -AllUsers failed ($($_.Exception.Message)); listing the current user's packages"
        $appx = @(Get-AppxPackage -ErrorAction SilentlyContinue)
    }
    foreach ($a in $appx) {
        $status = ''
        if ((Get-Prop $a 'IsFramework') -eq 'True') { $status = 'framework' }
        Write-Row @('appx', (Get-Prop $a 'Name'), (Get-Prop $a 'Version'), (Get-Prop $a 'Architecture'), (Get-Prop $a 'Publisher'),
            '', $status, (Get-Prop $a 'InstallLocation'))
    }
}

foreach ($hf in @(Get-CimInstance -ClassName Win32_QuickFixEngineering -ErrorAction SilentlyContinue)) {
    Write-Row @('hotfix', (Get-Prop $hf 'HotFixID'), '', '', (Get-Prop $hf 'Description'), (Format-Time $hf.InstalledOn), '', '')
}
exit 0
