<#
.SYNOPSIS
    Every public key that may log in through the OpenSSH server, per profile and in
    administrators_authorized_keys, with fingerprint, key options and file metadata
    (Windows).
.DESCRIPTION
    Usage (quiver passes parameters as separate arguments, never through a shell string):
        ssh-authorized-keys.ps1 [-user_home DIR]
            -user_home  only examine DIR\.ssh\authorized_keys* (one user, or a mounted image)

    Output: CSV with a header line on stdout (same columns as the Linux and macOS entries):
        source,user,file,line,key_type,fingerprint,comment,options,file_mtime,file_owner,file_mode
        source       authorized_keys (one row per key) or sshd_config (relevant directives
                     of %ProgramData%\ssh\sshd_config, the directive in options)
        fingerprint  SHA256:<base64>, as ssh-keygen -l prints it
        file_mode    empty on Windows (ACLs apply)
    Members of Administrators authenticate with %ProgramData%\ssh\administrators_authorized_keys
    by default, not with their profile's file; both are listed.
    Only public keys are read; the key blob itself is not printed.
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

function Write-Diag([string]$Message) { [Console]::Error.WriteLine("ssh-authorized-keys: $Message") }
if ($user_home -and -not (Test-Path -LiteralPath $user_home -PathType Container)) {
    Write-Diag "-user_home is not a directory: $user_home"; exit 2
}
function Format-Time($Value) {
    if ($null -eq $Value) { return '' }
    try { return ([datetime]$Value).ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [Globalization.CultureInfo]::InvariantCulture) }
    catch { return '' }
}
$Columns = @('source', 'user', 'file', 'line', 'key_type', 'fingerprint', 'comment', 'options', 'file_mtime', 'file_owner', 'file_mode')
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

$sha256 = [System.Security.Cryptography.SHA256]::Create()
function Get-Fingerprint([string]$Blob) {
    try {
        $bytes = [Convert]::FromBase64String($Blob)
        return 'SHA256:' + ([Convert]::ToBase64String($sha256.ComputeHash($bytes))).TrimEnd('=')
    } catch { return '' }
}
$keyTypeRe = '^(ssh-(rsa|dss|ed25519|ed448)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com|[a-z0-9.@-]+-cert-v01@openssh\.com)$'
$blobRe = '^[A-Za-z0-9+/]+=*$'

function Write-Keys([string]$User, [string]$File) {
    if (-not (Test-Path -LiteralPath $File -PathType Leaf)) { return }
    $item = Get-Item -LiteralPath $File -Force
    $mtime = Format-Time $item.LastWriteTime
    $owner = ''
    try { $owner = $item.GetAccessControl('Owner').GetOwner([System.Security.Principal.NTAccount]).Value } catch { }
    $lines = @()
    try { $lines = @(Get-Content -LiteralPath $File -ErrorAction Stop) }
    catch { Write-Diag "cannot read ${File}: $($_.Exception.Message)"; return }
    for ($n = 0; $n -lt $lines.Count; $n++) {
        $line = ([string]$lines[$n]).Trim()
        if (-not $line -or $line.StartsWith('#')) { continue }
        $w = @($line -split '\s+')
        $found = -1
        for ($i = 0; $i + 1 -lt $w.Count; $i++) {
            if ($w[$i] -match $keyTypeRe -and $w[$i + 1] -match $blobRe) { $found = $i; break }
        }
        if ($found -lt 0) {
            Write-Row @('authorized_keys', $User, $File, ($n + 1), 'unparsed', '', '', $line, $mtime, $owner, '')
            continue
        }
        $comment = ''
        if ($found + 2 -lt $w.Count) { $comment = $w[($found + 2)..($w.Count - 1)] -join ' ' }
        $options = ''
        if ($found -gt 0) { $options = $w[0..($found - 1)] -join ' ' }
        Write-Row @('authorized_keys', $User, $File, ($n + 1), $w[$found], (Get-Fingerprint $w[$found + 1]), $comment, $options,
            $mtime, $owner, '')
    }
}

$sshDir = Join-Path ([string]$env:ProgramData) 'ssh'
$config = Join-Path $sshDir 'sshd_config'
if (-not $user_home -and (Test-Path -LiteralPath $config -PathType Leaf)) {
    $n = 0
    foreach ($line in @(Get-Content -LiteralPath $config -ErrorAction SilentlyContinue)) {
        $n++
        $t = ([string]$line).Trim()
        if ($t -match '^(?i)(AuthorizedKeysFile|AuthorizedKeysCommand|AuthorizedKeysCommandUser|AuthorizedPrincipalsFile|PermitRootLogin|PubkeyAuthentication|TrustedUserCAKeys|Match)\b') {
            Write-Row @('sshd_config', '', $config, $n, '', '', '', $t, '', '', '')
        }
    }
}

if ($user_home) {
    $dir = (Resolve-Path -LiteralPath $user_home).ProviderPath
    foreach ($f in @(Get-ChildItem -LiteralPath (Join-Path $dir '.ssh') -Filter 'authorized_keys*' -File -Force -ErrorAction SilentlyContinue)) {
        Write-Keys (Split-Path -Leaf $dir) $f.FullName
    }
} else {
    Write-Keys 'Administrators' (Join-Path $sshDir 'administrators_authorized_keys')
    $usersRoot = Join-Path ([string]$env:SystemDrive + '\') 'Users'
    foreach ($u in @(Get-ChildItem -LiteralPath $usersRoot -Directory -Force -ErrorAction SilentlyContinue)) {
        foreach ($f in @(Get-ChildItem -LiteralPath (Join-Path $u.FullName '.ssh') -Filter 'authorized_keys*' -File -Force -ErrorAction SilentlyContinue)) {
            Write-Keys $u.Name $f.FullName
        }
    }
}
exit 0
