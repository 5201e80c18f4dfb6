<#
.SYNOPSIS
    Kernel state (test signing, integrity checks, HVCI) and every kernel driver with its
    file, Authenticode signature and sha256 (Windows).
.DESCRIPTION
    Usage (quiver passes parameters as separate arguments, never through a shell string):
        kernel-modules.ps1 [-Hash:$true|$false]
            -Hash   compute the sha256 of each driver file (default $true)

    Output: CSV with a header line on stdout (same columns as the Linux and macOS entries):
        name,kind,size,refcount,used_by,state,taint,path,signer,sha256
        kind   kernel  one row for the running kernel: state lists boot options that weaken
                       driver signing (TESTSIGNING, DISABLE_INTEGRITY_CHECKS) and whether
                       HVCI is running
               driver  a kernel or file-system driver service (Win32_SystemDriver);
                       state = State StartMode, taint = Authenticode status (Valid,
                       NotSigned, HashMismatch, ...), signer = signing certificate subject
    Vulnerable signed drivers (BYOVD) show as Valid: compare the sha256 with a blocklist.
    Read-only: never loads, stops or configures a driver. Exit 0 on success, non-zero on
    bad parameters.
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

function Write-Diag([string]$Message) { [Console]::Error.WriteLine("kernel-modules: $Message") }
$Columns = @('name', 'kind', 'size', 'refcount', 'used_by', 'state', 'taint', 'path', 'signer', 'sha256')
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

$WinDir = [string]$env:SystemRoot

# --- the kernel --------------------------------------------------------------------
$os = Get-CimInstance -ClassName Win32_OperatingSystem -ErrorAction SilentlyContinue
$flags = @()
try {
    $opts = [string](Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Control' -ErrorAction Stop).SystemStartOptions
    foreach ($o in @('TESTSIGNING', 'DISABLE_INTEGRITY_CHECKS', 'NOINTEGRITYCHECKS', 'DEBUG')) {
        if ($opts -match "\b$o\b") { $flags += $o }
    }
} catch { }
try {
    $dg = Get-CimInstance -Namespace 'root\Microsoft\Windows\DeviceGuard' -ClassName Win32_DeviceGuard -ErrorAction Stop
    if (@($dg.SecurityServicesRunning) -contains 2) { $flags += 'HVCI=running' } else { $flags += 'HVCI=off' }
} catch { }
$kernelName = 'ntoskrnl'
if ($os) { $kernelName = "ntoskrnl $($os.Version)" }
Write-Row @($kernelName, 'kernel', '', '', '', ($flags -join ' '), '', (Join-Path $WinDir 'System32\ntoskrnl.exe'), '', '')

# --- drivers -----------------------------------------------------------------------
function Resolve-DriverPath([string]$Raw) {
    if (-not $Raw) { return '' }
    $p = $Raw.Trim().Trim('"')
    if ($p.StartsWith('\??\')) { $p = $p.Substring(4) }
    if ($p -match '^(?i)\\SystemRoot\\') { $p = $WinDir + $p.Substring(11) }
    elseif ($p -match '^(?i)system32\\') { $p = Join-Path $WinDir $p }
    if ($p.StartsWith('\\')) { return '' }
    return $p
}
$drivers = @(Get-CimInstance -ClassName Win32_SystemDriver -ErrorAction SilentlyContinue)
if ($drivers.Count -eq 0) { Write-Diag 'Win32_SystemDriver returned nothing' }
foreach ($d in ($drivers | Sort-Object -Property Name)) {
    $path = Resolve-DriverPath ([string]$d.PathName)
    $size = ''; $status = ''; $signer = ''; $sha = ''
    if ($path -and (Test-Path -LiteralPath $path -PathType Leaf)) {
        try { $size = (Get-Item -LiteralPath $path -Force -ErrorAction Stop).Length } catch { }
        try {
            $sig = Get-AuthenticodeSignature -LiteralPath $path -ErrorAction Stop
            $status = [string]$sig.Status
            if ($sig.SignerCertificate) { $signer = [string]$sig.SignerCertificate.Subject }
        } catch { }
        if ($Hash) {
            try { $sha = (Get-FileHash -LiteralPath $path -Algorithm SHA256 -ErrorAction Stop).Hash.ToLowerInvariant() } catch { }
        }
    } elseif ($path) {
        $status = 'file missing'
    }
    Write-Row @($d.Name, 'driver', $size, '', '', "$($d.State) $($d.StartMode)", $status, $path, $signer, $sha)
}
exit 0
