<#
.SYNOPSIS
    Recently written executables and scripts in temporary and world-writable folders,
    where droppers stage their payloads (Windows).
.DESCRIPTION
    Usage (quiver passes parameters as separate arguments, never through a shell string):
        temp-executables.ps1 [-Days N] [-Hash:$true|$false] [-max_files N]
            -Days       written or created within the last N days (default 7)
            -Hash       add the sha256 of each hit (default $true)
            -max_files  stop after this many hits (default 2000)

    Searched (reparse points are not followed): every profile's AppData\Local\Temp and
    the agent's %TEMP% (8 levels), %SystemRoot%\Temp (8), C:\Users\Public (8),
    C:\ProgramData (3), every profile's AppData\Roaming (2) and C:\PerfLogs (4).
    A hit is a PE file (starts with "MZ") or a file with a script or launcher extension
    (.ps1 .psm1 .bat .cmd .vbs .vbe .js .jse .wsf .hta .lnk .scr .msi .jar .cpl).
    Output: CSV with a header line on stdout (same columns as the Linux and macOS entries):
        path,kind,size,mtime,ctime,mode,owner,sha256
        kind   pe | script
        ctime  the creation time on Windows
        mode   file attributes
    Read-only: the first bytes of candidate files are read to recognise them; nothing is
    executed, moved or deleted. Exit 0 on success, non-zero on bad parameters.
#>
[CmdletBinding()]
param(
    [int]$Days = 7,
    [switch]$Hash = $true,
    [int]$max_files = 2000
)
Set-StrictMode -Version 2
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'SilentlyContinue'
if ([Console]::IsOutputRedirected) {
    try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding($false) } catch { }
}

function Write-Diag([string]$Message) { [Console]::Error.WriteLine("temp-executables: $Message") }
if ($Days -lt 1) { Write-Diag "-Days must be positive, got: $Days"; exit 2 }
if ($max_files -lt 1) { Write-Diag "-max_files must be positive, got: $max_files"; exit 2 }
function Format-Time($Value) {
    if ($null -eq $Value) { return '' }
    try { return ([datetime]$Value).ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [Globalization.CultureInfo]::InvariantCulture) }
    catch { return '' }
}
$Columns = @('path', 'kind', 'size', 'mtime', 'ctime', 'mode', 'owner', 'sha256')
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

$scriptExt = @('.ps1', '.psm1', '.bat', '.cmd', '.vbs', '.vbe', '.js', '.jse', '.wsf', '.hta', '.lnk', '.scr', '.msi', '.jar', '.cpl')
$cutoff = (Get-Date).AddDays(-$Days)

function Test-PE([string]$File) {
    $fs = $null
    try {
        $fs = New-Object System.IO.FileStream($File, [System.IO.FileMode]::Open, [System.IO.FileAccess]::Read, [System.IO.FileShare]'ReadWrite, Delete')
        $b = New-Object byte[] 2
        $n = $fs.Read($b, 0, 2)
        return ($n -eq 2 -and $b[0] -eq 0x4D -and $b[1] -eq 0x5A)
    } catch { return $false }
    finally { if ($fs) { $fs.Dispose() } }
}

# Search roots with their depth, each folder once.
$roots = New-Object System.Collections.ArrayList
$seen = @{}
function Add-Root([string]$Dir, [int]$Depth) {
    if (-not $Dir -or $Dir.StartsWith('\\')) { return }
    if (-not (Test-Path -LiteralPath $Dir -PathType Container)) { return }
    $full = (Resolve-Path -LiteralPath $Dir).ProviderPath.TrimEnd('\')
    if ($seen.ContainsKey($full)) { return }
    $seen[$full] = $true
    [void]$roots.Add(@($full, $Depth))
}
Add-Root ([string]$env:TEMP) 8
$usersRoot = Join-Path ([string]$env:SystemDrive + '\') 'Users'
$profiles = @(Get-ChildItem -LiteralPath $usersRoot -Directory -Force -ErrorAction SilentlyContinue)
foreach ($p in $profiles) { Add-Root (Join-Path $p.FullName 'AppData\Local\Temp') 8 }
Add-Root (Join-Path ([string]$env:SystemRoot) 'Temp') 8
Add-Root (Join-Path $usersRoot 'Public') 8
Add-Root ([string]$env:ProgramData) 3
foreach ($p in $profiles) { Add-Root (Join-Path $p.FullName 'AppData\Roaming') 2 }
Add-Root (Join-Path ([string]$env:SystemDrive + '\') 'PerfLogs') 4

$hits = 0
$done = $false
foreach ($r in $roots) {
    if ($done) { break }
    $queue = New-Object System.Collections.Queue
    $queue.Enqueue(@((Get-Item -LiteralPath $r[0] -Force), 1))
    while ($queue.Count -gt 0 -and -not $done) {
        $entry = $queue.Dequeue()
        $dir = $entry[0]; $depth = $entry[1]
        $children = @()
        try { $children = @($dir.GetFileSystemInfos()) } catch { Write-Diag "cannot list $($dir.FullName)"; continue }
        foreach ($c in $children) {
            $isLink = ($c.Attributes -band [IO.FileAttributes]::ReparsePoint) -ne 0
            if ($c -is [IO.DirectoryInfo]) {
                if (-not $isLink -and $depth -lt $r[1]) { $queue.Enqueue(@($c, ($depth + 1))) }
                continue
            }
            if ($c.LastWriteTime -lt $cutoff -and $c.CreationTime -lt $cutoff) { continue }
            $kind = ''
            if (Test-PE $c.FullName) { $kind = 'pe' }
            elseif ($scriptExt -contains $c.Extension.ToLowerInvariant()) { $kind = 'script' }
            else { continue }
            $owner = ''
            try { $owner = $c.GetAccessControl('Owner').GetOwner([System.Security.Principal.NTAccount]).Value } catch { }
            $sha = ''
            if ($Hash) {
                try { $sha = (Get-FileHash -LiteralPath $c.FullName -Algorithm SHA256 -ErrorAction Stop).Hash.ToLowerInvariant() } catch { }
            }
            Write-Row @($c.FullName, $kind, $c.Length, (Format-Time $c.LastWriteTime), (Format-Time $c.CreationTime),
                ([string]$c.Attributes), $owner, $sha)
            $hits++
            if ($hits -ge $max_files) {
                Write-Diag "stopped after -max_files $max_files hits; raise it or narrow -Days"
                $done = $true
                break
            }
        }
    }
}
exit 0
