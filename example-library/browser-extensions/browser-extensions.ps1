<#
.SYNOPSIS
    Extensions installed in Chrome, Edge, Brave, Chromium, Vivaldi, Opera and Firefox
    profiles of every user (Windows).
.DESCRIPTION
    Usage (quiver passes parameters as separate arguments, never through a shell string):
        browser-extensions.ps1 [-user_home DIR]
            -user_home  only examine this profile folder (one user, or a mounted image)

    Output: CSV with a header line on stdout (same columns as the Linux and macOS entries):
        user,browser,profile,id,name,version,enabled,permissions,update_url,install_time,path
        Chromium family: <User Data>\<profile>\Extensions\<id>\<version>\manifest.json;
          __MSG_x__ names resolved from _locales; enabled is empty (kept in Preferences);
          install_time is the version folder's creation time.
        Firefox: <profile>\extensions.json (type "extension"), enabled = "active".
        permissions joins API and host permissions with ";".
    Read-only. Exit 0 on success, non-zero on bad parameters.
#>
[CmdletBinding()]
param(
    [string]$user_home = ''
)
Set-StrictMode -Version 2
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'SilentlyContinue'
if ([Console]::IsOutputRedirected) {
    try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding($false) } catch { }
}

function Write-Diag([string]$Message) { [Console]::Error.WriteLine("browser-extensions: $Message") }
if ($user_home -and -not (Test-Path -LiteralPath $user_home -PathType Container)) {
    Write-Diag "-user_home is not a directory: $user_home"; exit 2
}
function Format-Time($Value) {
    if ($null -eq $Value) { return '' }
    try { return ([datetime]$Value).ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [Globalization.CultureInfo]::InvariantCulture) }
    catch { return '' }
}
$Columns = @('user', 'browser', 'profile', 'id', 'name', 'version', 'enabled', 'permissions', 'update_url', 'install_time', 'path')
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
# Property of a parsed JSON object, or $null when absent (safe under strict mode).
function Get-Prop($Object, [string]$Name) {
    if ($null -eq $Object) { return $null }
    $p = $Object.PSObject.Properties[$Name]
    if ($null -eq $p) { return $null }
    return $p.Value
}
function Read-Json([string]$File) {
    try { return (Get-Content -LiteralPath $File -Raw -Encoding UTF8 -ErrorAction Stop | ConvertFrom-Json -ErrorAction Stop) }
    catch { Write-Diag "cannot parse ${File}: $($_.Exception.Message)"; return $null }
}

function Resolve-Message([string]$Dir, [string]$Locale, [string]$Name) {
    if ($Name -notmatch '^__MSG_(.+)__$') { return $Name }
    $key = $Matches[1]
    foreach ($loc in @($Locale, 'en', 'en_US')) {
        if (-not $loc) { continue }
        $file = Join-Path $Dir "_locales\$loc\messages.json"
        if (-not (Test-Path -LiteralPath $file -PathType Leaf)) { continue }
        $messages = Read-Json $file
        if ($null -eq $messages) { continue }
        foreach ($p in $messages.PSObject.Properties) {
            if ($p.Name -eq $key) { return [string](Get-Prop $p.Value 'message') }
        }
    }
    return $Name
}

function Read-Chromium([string]$User, [string]$Browser, [string]$UserData) {
    $extDirs = @()
    foreach ($p in @(Get-ChildItem -LiteralPath $UserData -Directory -Force -ErrorAction SilentlyContinue)) {
        $e = Join-Path $p.FullName 'Extensions'
        if (Test-Path -LiteralPath $e -PathType Container) { $extDirs += ,@($p.Name, $e) }
    }
    # Opera keeps its single profile directly in the data folder.
    $own = Join-Path $UserData 'Extensions'
    if (Test-Path -LiteralPath $own -PathType Container) { $extDirs += ,@((Split-Path -Leaf $UserData), $own) }
    foreach ($pair in $extDirs) {
        $profileName = $pair[0]
        foreach ($ext in @(Get-ChildItem -LiteralPath $pair[1] -Directory -Force -ErrorAction SilentlyContinue)) {
            foreach ($ver in @(Get-ChildItem -LiteralPath $ext.FullName -Directory -Force -ErrorAction SilentlyContinue)) {
                $manifestFile = Join-Path $ver.FullName 'manifest.json'
                if (-not (Test-Path -LiteralPath $manifestFile -PathType Leaf)) { continue }
                $m = Read-Json $manifestFile
                if ($null -eq $m) { continue }
                $perms = New-Object System.Collections.ArrayList
                foreach ($list in @((Get-Prop $m 'permissions'), (Get-Prop $m 'host_permissions'))) {
                    foreach ($x in @($list)) { if ($x -is [string] -and -not $perms.Contains($x)) { [void]$perms.Add($x) } }
                }
                foreach ($cs in @(Get-Prop $m 'content_scripts')) {
                    foreach ($x in @(Get-Prop $cs 'matches')) { if ($x -is [string] -and -not $perms.Contains($x)) { [void]$perms.Add($x) } }
                }
                $name = Resolve-Message $ver.FullName ([string](Get-Prop $m 'default_locale')) ([string](Get-Prop $m 'name'))
                Write-Row @($User, $Browser, $profileName, $ext.Name, $name, (Get-Prop $m 'version'), '',
                    ($perms -join ';'), (Get-Prop $m 'update_url'), (Format-Time $ver.CreationTime), $ver.FullName)
            }
        }
    }
}

function Read-Firefox([string]$User, [string]$ProfilesDir) {
    foreach ($p in @(Get-ChildItem -LiteralPath $ProfilesDir -Directory -Force -ErrorAction SilentlyContinue)) {
        $file = Join-Path $p.FullName 'extensions.json'
        if (-not (Test-Path -LiteralPath $file -PathType Leaf)) { continue }
        $doc = Read-Json $file
        foreach ($a in @(Get-Prop $doc 'addons')) {
            if ($null -eq $a -or (Get-Prop $a 'type') -ne 'extension') { continue }
            $perms = @()
            $up = Get-Prop $a 'userPermissions'
            foreach ($x in @(Get-Prop $up 'permissions')) { if ($x) { $perms += [string]$x } }
            foreach ($x in @(Get-Prop $up 'origins')) { if ($x) { $perms += [string]$x } }
            $installed = ''
            $ms = Get-Prop $a 'installDate'
            if ($ms) {
                $epoch = New-Object DateTime 1970, 1, 1, 0, 0, 0, ([DateTimeKind]::Utc)
                $installed = Format-Time ($epoch.AddMilliseconds([double]$ms))
            }
            $enabled = ''
            $active = Get-Prop $a 'active'
            if ($null -ne $active) { $enabled = ([string]$active).ToLowerInvariant() }
            Write-Row @($User, 'firefox', $p.Name, (Get-Prop $a 'id'), (Get-Prop (Get-Prop $a 'defaultLocale') 'name'),
                (Get-Prop $a 'version'), $enabled, ($perms -join ';'), (Get-Prop $a 'updateURL'), $installed, (Get-Prop $a 'path'))
        }
    }
}

$chromium = @(
    @('chrome', 'AppData\Local\Google\Chrome\User Data'),
    @('chrome-beta', 'AppData\Local\Google\Chrome Beta\User Data'),
    @('chromium', 'AppData\Local\Chromium\User Data'),
    @('edge', 'AppData\Local\Microsoft\Edge\User Data'),
    @('edge-beta', 'AppData\Local\Microsoft\Edge Beta\User Data'),
    @('brave', 'AppData\Local\BraveSoftware\Brave-Browser\User Data'),
    @('vivaldi', 'AppData\Local\Vivaldi\User Data'),
    @('opera', 'AppData\Roaming\Opera Software\Opera Stable')
)

$profileDirs = @()
if ($user_home) {
    $profileDirs = @((Resolve-Path -LiteralPath $user_home).ProviderPath)
} else {
    $usersRoot = Join-Path ([string]$env:SystemDrive + '\') 'Users'
    $profileDirs = @(Get-ChildItem -LiteralPath $usersRoot -Directory -Force -ErrorAction SilentlyContinue | ForEach-Object { $_.FullName })
}
foreach ($dir in $profileDirs) {
    $user = Split-Path -Leaf $dir
    foreach ($b in $chromium) {
        $ud = Join-Path $dir $b[1]
        if (Test-Path -LiteralPath $ud -PathType Container) { Read-Chromium $user $b[0] $ud }
    }
    $ff = Join-Path $dir 'AppData\Roaming\Mozilla\Firefox\Profiles'
    if (Test-Path -LiteralPath $ff -PathType Container) { Read-Firefox $user $ff }
}
exit 0
