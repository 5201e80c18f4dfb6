<#
.SYNOPSIS
    The DNS client cache, configured DNS servers and static hosts entries (Windows).
.DESCRIPTION
    Usage (quiver passes parameters as separate arguments, never through a shell string):
        dns-cache.ps1          (no parameters)

    Output: CSV with a header line on stdout (same columns as the Linux and macOS entries):
        source,name,type,data,ttl,scope
        source  dns_cache    Get-DnsClientCache (or ipconfig /displaydns on systems without
                             the DnsClient module); scope = Answer/Authority/Additional,
                             type NEGATIVE for cached failures (status in data)
                dns_server   DNS servers per interface (scope = interface alias)
                hosts_file   static entries in drivers\etc\hosts
    The cache is read, never flushed. Read-only. Exit 0 on success, non-zero on bad
    parameters.
#>
[CmdletBinding()]
param()
Set-StrictMode -Version 2
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'SilentlyContinue'
if ([Console]::IsOutputRedirected) {
    try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding($false) } catch { }
}

function Write-Diag([string]$Message) { [Console]::Error.WriteLine("dns-cache: $Message") }
$Columns = @('source', 'name', 'type', 'data', 'ttl', 'scope')
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

$typeNames = @{ 1 = 'A'; 2 = 'NS'; 5 = 'CNAME'; 6 = 'SOA'; 12 = 'PTR'; 15 = 'MX'; 16 = 'TXT'; 28 = 'AAAA'; 33 = 'SRV'; 65 = 'HTTPS' }
$sectionNames = @{ 1 = 'Answer'; 2 = 'Authority'; 3 = 'Additional' }

# --- DNS client cache --------------------------------------------------------------
if (Get-Command -Name Get-DnsClientCache -ErrorAction SilentlyContinue) {
    foreach ($e in @(Get-DnsClientCache -ErrorAction SilentlyContinue)) {
        $t = [int]$e.Type
        $type = [string]$t
        if ($typeNames.ContainsKey($t)) { $type = $typeNames[$t] }
        $section = [string]$e.Section
        if ($sectionNames.ContainsKey([int]$e.Section)) { $section = $sectionNames[[int]$e.Section] }
        $data = [string]$e.Data
        if ([int]$e.Status -ne 0) { $type = 'NEGATIVE'; $data = "status $($e.Status)" }
        Write-Row @('dns_cache', $e.Entry, $type, $data, $e.TimeToLive, $section)
    }
} else {
    Write-Diag 'Get-DnsClientCache not available; parsing ipconfig /displaydns (English output only)'
    $name = ''; $type = ''; $ttl = ''; $section = ''; $afterSection = $false
    foreach ($line in @(& ipconfig.exe /displaydns 2>$null)) {
        $l = [string]$line
        if ($l -notmatch '^\s+(.+?)[\s.]*:\s(.*)$') { continue }
        $label = $Matches[1].Trim(); $value = $Matches[2].Trim()
        if ($label -like 'Record Name*') { $name = $value; $afterSection = $false }
        elseif ($label -like 'Record Type*') {
            $type = $value
            if ($value -match '^\d+$' -and $typeNames.ContainsKey([int]$value)) { $type = $typeNames[[int]$value] }
        }
        elseif ($label -like 'Time To Live*') { $ttl = $value }
        elseif ($label -like 'Section*') { $section = $value; $afterSection = $true }
        elseif ($afterSection) {
            Write-Row @('dns_cache', $name, $type, $value, $ttl, $section)
            $afterSection = $false
        }
    }
}

# --- configured DNS servers --------------------------------------------------------
if (Get-Command -Name Get-DnsClientServerAddress -ErrorAction SilentlyContinue) {
    foreach ($s in @(Get-DnsClientServerAddress -ErrorAction SilentlyContinue)) {
        foreach ($addr in @($s.ServerAddresses)) {
            if ($addr) { Write-Row @('dns_server', '', 'nameserver', $addr, '', $s.InterfaceAlias) }
        }
    }
} else {
    foreach ($a in @(Get-CimInstance -ClassName Win32_NetworkAdapterConfiguration -Filter 'IPEnabled = True' -ErrorAction SilentlyContinue)) {
        foreach ($addr in @($a.DNSServerSearchOrder)) {
            if ($addr) { Write-Row @('dns_server', '', 'nameserver', $addr, '', $a.Description) }
        }
    }
}

# --- hosts file --------------------------------------------------------------------
$hosts = Join-Path ([string]$env:SystemRoot) 'System32\drivers\etc\hosts'
if (Test-Path -LiteralPath $hosts -PathType Leaf) {
    foreach ($line in @(Get-Content -LiteralPath $hosts -ErrorAction SilentlyContinue)) {
        $l = ([string]$line -split '#', 2)[0].Trim()
        if (-not $l) { continue }
        $w = @($l -split '\s+')
        if ($w.Count -lt 2) { continue }
        $type = 'A'
        if ($w[0].Contains(':')) { $type = 'AAAA' }
        for ($i = 1; $i -lt $w.Count; $i++) { Write-Row @('hosts_file', $w[$i], $type, $w[0], '', $hosts) }
    }
} else {
    Write-Diag "cannot read $hosts"
}
exit 0
