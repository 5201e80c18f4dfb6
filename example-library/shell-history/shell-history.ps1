<#
.SYNOPSIS
    PowerShell (PSReadLine) command history of every user profile, plus Git Bash and REPL
    history files found in profiles (Windows).
.DESCRIPTION
    RISK: HIGH. History files routinely contain secrets that users typed on a command line
    (tokens, passwords passed as arguments, connection strings). Handle the output as
    sensitive evidence.

    Usage (quiver passes parameters as separate arguments, never through a shell string):
        shell-history.ps1 [-max_lines N] [-user_home DIR]
            -max_lines  read at most the last N lines of each history file (default 1000)
            -user_home  only examine this profile folder (one user, or a mounted image)

    Output: JSON lines on stdout (same records as the Linux and macOS entries):
        {"record":"command","user":..,"shell":..,"file":..,"line":N,"timestamp":null,
         "command":..,"file_mtime":..}
    PSReadLine stores no timestamps; file_mtime is the time of the last command written.
    Multi-line commands (lines ending in a backtick) are joined. cmd.exe keeps no history
    on disk. Profiles searched: C:\Users\*, and the SYSTEM, LocalService and
    NetworkService profiles (services that ran PowerShell leave history there too).
    Files are opened with sharing so a running PowerShell is not disturbed.
    Read-only. Exit 0 on success, non-zero on bad parameters.
#>
[CmdletBinding()]
param(
    [int]$max_lines = 1000,
    [string]$user_home = ''
)
Set-StrictMode -Version 2
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'SilentlyContinue'
if ([Console]::IsOutputRedirected) {
    try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding($false) } catch { }
}

function Write-Diag([string]$Message) { [Console]::Error.WriteLine("shell-history: $Message") }
if ($max_lines -lt 1) { Write-Diag "-max_lines must be positive, got: $max_lines"; exit 2 }
if ($user_home -and -not (Test-Path -LiteralPath $user_home -PathType Container)) {
    Write-Diag "-user_home is not a directory: $user_home"; exit 2
}
function Format-Time($Value) {
    if ($null -eq $Value) { return '' }
    try { return ([datetime]$Value).ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [Globalization.CultureInfo]::InvariantCulture) }
    catch { return '' }
}
function Write-Record([string]$User, [string]$Shell, [string]$File, [int]$Line, [string]$Command, [string]$Mtime) {
    $o = [ordered]@{
        record = 'command'; user = $User; shell = $Shell; file = $File; line = $Line
        timestamp = $null; command = $Command; file_mtime = $Mtime
    }
    [pscustomobject]$o | ConvertTo-Json -Compress
}

function Read-Lines([string]$File) {
    $lines = New-Object System.Collections.Generic.List[string]
    $fs = $null
    try {
        $fs = New-Object System.IO.FileStream($File, [System.IO.FileMode]::Open, [System.IO.FileAccess]::Read, [System.IO.FileShare]'ReadWrite, Delete')
        $sr = New-Object System.IO.StreamReader($fs, [System.Text.Encoding]::UTF8, $true)
        while ($null -ne ($l = $sr.ReadLine())) { $lines.Add($l) }
        $sr.Close()
    } catch {
        Write-Diag "cannot read ${File}: $($_.Exception.Message)"
    } finally {
        if ($fs) { $fs.Dispose() }
    }
    return ,$lines
}

function Write-History([string]$User, [string]$Shell, [string]$File) {
    if (-not (Test-Path -LiteralPath $File -PathType Leaf)) { return }
    $mtime = ''
    try { $mtime = Format-Time (Get-Item -LiteralPath $File -Force -ErrorAction Stop).LastWriteTime } catch { }
    $lines = Read-Lines $File
    $n = $lines.Count
    $start = 0
    if ($n -gt $max_lines) { $start = $n - $max_lines }
    $pending = $null
    $first = 0
    for ($i = $start; $i -lt $n; $i++) {
        $line = $lines[$i]
        if ($Shell -eq 'powershell') {
            if ($null -eq $pending) { $first = $i + 1; $pending = '' }
            if ($line.EndsWith('`')) { $pending += $line.Substring(0, $line.Length - 1) + "`n"; continue }
            $cmd = $pending + $line
            $pending = $null
            if ($cmd) { Write-Record $User $Shell $File $first $cmd $mtime }
        } elseif ($Shell -eq 'bash') {
            if ($line -match '^#\d{9,11}$') { continue }
            if ($line) { Write-Record $User $Shell $File ($i + 1) $line $mtime }
        } else {
            if ($line) { Write-Record $User $Shell $File ($i + 1) $line $mtime }
        }
    }
    if ($pending) { Write-Record $User $Shell $File $first $pending $mtime }
}

$profileDirs = @()
if ($user_home) {
    $profileDirs = @((Resolve-Path -LiteralPath $user_home).ProviderPath)
} else {
    $usersRoot = Join-Path ([string]$env:SystemDrive + '\') 'Users'
    $profileDirs = @(Get-ChildItem -LiteralPath $usersRoot -Directory -Force -ErrorAction SilentlyContinue | ForEach-Object { $_.FullName })
    $win = [string]$env:SystemRoot
    $profileDirs += @((Join-Path $win 'System32\config\systemprofile'), (Join-Path $win 'SysWOW64\config\systemprofile'),
        (Join-Path $win 'ServiceProfiles\LocalService'), (Join-Path $win 'ServiceProfiles\NetworkService'))
}

foreach ($dir in $profileDirs) {
    if (-not (Test-Path -LiteralPath $dir -PathType Container)) { continue }
    $user = Split-Path -Leaf $dir
    if ($dir -like '*\config\systemprofile') { $user = 'SYSTEM' }
    $psr = Join-Path $dir 'AppData\Roaming\Microsoft\Windows\PowerShell\PSReadLine'
    foreach ($f in @(Get-ChildItem -LiteralPath $psr -Filter '*_history.txt' -File -Force -ErrorAction SilentlyContinue)) {
        Write-History $user 'powershell' $f.FullName
    }
    Write-History $user 'bash' (Join-Path $dir '.bash_history')
    Write-History $user 'python' (Join-Path $dir '.python_history')
    Write-History $user 'node' (Join-Path $dir '.node_repl_history')
    Write-History $user 'psql' (Join-Path $dir 'AppData\Roaming\postgresql\psql_history')
}
exit 0
