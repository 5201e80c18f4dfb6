<#
.SYNOPSIS
    Running processes with parent, user, command line and sha256 of the image (Windows).
.DESCRIPTION
    Usage (quiver passes parameters as separate arguments, never through a shell string):
        process-list.ps1 [-Hash:$true|$false]
            -Hash   compute the sha256 of each process image (default $true)

    Output: CSV with a header line on stdout (same columns as the Linux and macOS entries):
        pid,ppid,parent_name,name,user,uid,state,start_time,exe,exe_deleted,cwd,sha256,cmdline
    user is DOMAIN\name from Win32_Process.GetOwner, uid the owner SID; state and cwd are
    not exposed by Windows and stay empty. exe_deleted is true when the image path no
    longer exists on disk. Times are UTC. Run elevated (or as SYSTEM) to see the owner
    and command line of every process.
    Read-only: queries CIM and hashes files. Exit 0 on success, non-zero on bad parameters.
#>
[CmdletBinding()]
param(
    [switch]$Hash = $true
)
Set-StrictMode -Version 2
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'SilentlyContinue'
if ([Console]::IsOutputRedirected) {
    try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding($false) } catch { }
}

function Write-Diag([string]$Message) { [Console]::Error.WriteLine("process-list: $Message") }
function Format-Time($Value) {
    if ($null -eq $Value) { return '' }
    try { return ([datetime]$Value).ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [Globalization.CultureInfo]::InvariantCulture) }
    catch { return '' }
}
$Columns = @('pid', 'ppid', 'parent_name', 'name', 'user', 'uid', 'state', 'start_time', 'exe', 'exe_deleted', 'cwd', 'sha256', 'cmdline')
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

$procs = @(Get-CimInstance -ClassName Win32_Process -ErrorAction SilentlyContinue)
if ($procs.Count -eq 0) {
    Write-Diag 'Win32_Process returned nothing (WMI unavailable?)'
    exit 0
}
$nameById = @{}
foreach ($p in $procs) { $nameById[[int]$p.ProcessId] = [string]$p.Name }

$hashCache = @{}
$unreadable = 0
foreach ($p in $procs) {
    $user = ''
    $sid = ''
    try {
        $owner = Invoke-CimMethod -InputObject $p -MethodName GetOwner -ErrorAction Stop
        if ($owner -and $owner.ReturnValue -eq 0) {
            if ($owner.Domain) { $user = $owner.Domain + '\' + $owner.User } else { $user = [string]$owner.User }
        }
        $ownerSid = Invoke-CimMethod -InputObject $p -MethodName GetOwnerSid -ErrorAction Stop
        if ($ownerSid -and $ownerSid.ReturnValue -eq 0) { $sid = [string]$ownerSid.Sid }
    } catch { }

    $exe = [string]$p.ExecutablePath
    $deleted = ''
    $sha = ''
    if ($exe) {
        if (Test-Path -LiteralPath $exe -PathType Leaf) { $deleted = 'false' } else { $deleted = 'true' }
        if ($Hash -and $deleted -eq 'false') {
            if ($hashCache.ContainsKey($exe)) {
                $sha = $hashCache[$exe]
            } else {
                try { $sha = (Get-FileHash -LiteralPath $exe -Algorithm SHA256 -ErrorAction Stop).Hash.ToLowerInvariant() }
                catch { $unreadable++ }
                $hashCache[$exe] = $sha
            }
        }
    }
    $parent = ''
    if ($nameById.ContainsKey([int]$p.ParentProcessId)) { $parent = $nameById[[int]$p.ParentProcessId] }
    Write-Row @($p.ProcessId, $p.ParentProcessId, $parent, $p.Name, $user, $sid, '',
        (Format-Time $p.CreationDate), $exe, $deleted, '', $sha, $p.CommandLine)
}
if ($unreadable -gt 0) { Write-Diag "could not hash $unreadable image(s) (access denied or locked)" }
exit 0
