<#
.SYNOPSIS
    A MACB timeline of one folder: every entry with size, times, attributes and owner,
    optionally the sha256 of each file (Windows).
.DESCRIPTION
    Usage (quiver passes parameters as separate arguments, never through a shell string):
        file-timeline.ps1 -Path DIR [-max_depth N] [-Hash:$true|$false]
            -Path       folder to walk (required)
            -max_depth  how many levels below DIR to descend (default 3; 0 = DIR only)
            -Hash       add a sha256 column for files (default $false)

    Output: CSV with a header line on stdout (same columns as the Linux and macOS entries):
        path,type,size,mtime,atime,ctime,btime,mode,owner,group[,sha256]
        type   f file, d directory, l reparse point (symlink or junction; not followed)
        times  UTC: modified, accessed, (ctime: MFT change time is not exposed by .NET and
               stays empty), born (CreationTime)
        mode   the file attributes (ReadOnly, Hidden, System, Archive, ...)
        owner  the owner from the security descriptor; group stays empty
    Read-only. Exit 0 on success, 2 when -Path is missing or does not exist.
#>
[CmdletBinding()]
param(
    [string]$Path = '',
    [int]$max_depth = 3,
    [switch]$Hash = $false
)
Set-StrictMode -Version 2
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'SilentlyContinue'
if ([Console]::IsOutputRedirected) {
    try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding($false) } catch { }
}

function Write-Diag([string]$Message) { [Console]::Error.WriteLine("file-timeline: $Message") }
if (-not $Path) { Write-Diag '-Path is required'; exit 2 }
if ($max_depth -lt 0) { Write-Diag "-max_depth must not be negative, got: $max_depth"; exit 2 }
if (-not (Test-Path -LiteralPath $Path)) { Write-Diag "-Path does not exist: $Path"; exit 2 }

function Format-Time($Value) {
    if ($null -eq $Value) { return '' }
    try { return ([datetime]$Value).ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [Globalization.CultureInfo]::InvariantCulture) }
    catch { return '' }
}
$Columns = @('path', 'type', 'size', 'mtime', 'atime', 'ctime', 'btime', 'mode', 'owner', 'group')
if ($Hash) { $Columns += 'sha256' }
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

$ownerCache = @{}
function Get-Owner($Item) {
    try {
        $sid = $Item.GetAccessControl('Owner').GetOwner([System.Security.Principal.SecurityIdentifier])
        $key = $sid.Value
        if (-not $ownerCache.ContainsKey($key)) {
            $name = $key
            try { $name = $sid.Translate([System.Security.Principal.NTAccount]).Value } catch { }
            $ownerCache[$key] = $name
        }
        return $ownerCache[$key]
    } catch { return '' }
}

$errors = 0
function Write-Entry($Item) {
    $isLink = ($Item.Attributes -band [IO.FileAttributes]::ReparsePoint) -ne 0
    $type = 'f'
    $size = ''
    if ($Item -is [IO.DirectoryInfo]) { $type = 'd' } else { $size = $Item.Length }
    if ($isLink) { $type = 'l' }
    $values = @($Item.FullName, $type, $size, (Format-Time $Item.LastWriteTimeUtc), (Format-Time $Item.LastAccessTimeUtc),
        '', (Format-Time $Item.CreationTimeUtc), ([string]$Item.Attributes), (Get-Owner $Item), '')
    if ($Hash) {
        $sha = ''
        if ($type -eq 'f') {
            try { $sha = (Get-FileHash -LiteralPath $Item.FullName -Algorithm SHA256 -ErrorAction Stop).Hash.ToLowerInvariant() }
            catch { $script:errors++ }
        }
        $values += $sha
    }
    Write-Row $values
}

$root = Get-Item -LiteralPath $Path -Force -ErrorAction Stop
Write-Entry $root
# Breadth-first walk that never enters reparse points (junction loops, redirected folders).
$queue = New-Object System.Collections.Queue
if ($root -is [IO.DirectoryInfo] -and ($root.Attributes -band [IO.FileAttributes]::ReparsePoint) -eq 0 -and $max_depth -gt 0) {
    $queue.Enqueue(@($root, 1))
}
while ($queue.Count -gt 0) {
    $entry = $queue.Dequeue()
    $dir = $entry[0]; $depth = $entry[1]
    $children = @()
    try { $children = @($dir.GetFileSystemInfos()) }
    catch { Write-Diag "cannot list $($dir.FullName): $($_.Exception.Message)"; continue }
    foreach ($c in $children) {
        Write-Entry $c
        if ($c -is [IO.DirectoryInfo] -and ($c.Attributes -band [IO.FileAttributes]::ReparsePoint) -eq 0 -and $depth -lt $max_depth) {
            $queue.Enqueue(@($c, ($depth + 1)))
        }
    }
}
if ($errors -gt 0) { Write-Diag "could not hash $errors file(s) (locked or access denied)" }
exit 0
