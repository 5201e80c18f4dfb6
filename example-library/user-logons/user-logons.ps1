<#
.SYNOPSIS
    Logon sessions, accounts owning processes, and recent successful, failed and RDP
    logons from the event logs (Windows).
.DESCRIPTION
    Usage (quiver passes parameters as separate arguments, never through a shell string):
        user-logons.ps1 [-Days N] [-max_events N]
            -Days        how far back to search the event logs (default 7)
            -max_events  at most this many events per source, newest first (default 500)

    Output: CSV with a header line on stdout (same columns as the Linux and macOS entries):
        source,user,terminal,host,start,end,detail
        source  session        Win32_LogonSession joined with Win32_LoggedOnUser;
                               terminal = logon type (Interactive, RemoteInteractive, ...)
                process_owner  one row per account owning processes
                logon          Security 4624 (SYSTEM and service logons left out)
                failed_logon   Security 4625, detail holds status and sub-status codes
                explicit_creds Security 4648 (runas, lateral movement with alternate creds)
                rdp            TerminalServices-LocalSessionManager 21/23/24/25
    Reading the Security log needs elevation; a missing log is reported on stderr.
    Account names are taken from the records themselves; no SID is resolved against a
    domain controller. Read-only. Exit 0 on success, non-zero on bad parameters.
#>
[CmdletBinding()]
param(
    [int]$Days = 7,
    [int]$max_events = 500
)
Set-StrictMode -Version 2
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'SilentlyContinue'
if ([Console]::IsOutputRedirected) {
    try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding($false) } catch { }
}

function Write-Diag([string]$Message) { [Console]::Error.WriteLine("user-logons: $Message") }
if ($Days -lt 0) { Write-Diag "-Days must not be negative, got: $Days"; exit 2 }
if ($max_events -lt 1) { Write-Diag "-max_events must be positive, got: $max_events"; exit 2 }

function Format-Time($Value) {
    if ($null -eq $Value) { return '' }
    try { return ([datetime]$Value).ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [Globalization.CultureInfo]::InvariantCulture) }
    catch { return '' }
}
$Columns = @('source', 'user', 'terminal', 'host', 'start', 'end', 'detail')
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

$logonTypes = @{
    '0' = 'System'; '2' = 'Interactive'; '3' = 'Network'; '4' = 'Batch'; '5' = 'Service'; '7' = 'Unlock'
    '8' = 'NetworkCleartext'; '9' = 'NewCredentials'; '10' = 'RemoteInteractive'; '11' = 'CachedInteractive'
    '12' = 'CachedRemoteInteractive'; '13' = 'CachedUnlock'
}
function Get-LogonTypeName([string]$Type) {
    if ($logonTypes.ContainsKey($Type)) { return $logonTypes[$Type] }
    return $Type
}

# --- logon sessions ----------------------------------------------------------------
$userByLogonId = @{}
foreach ($l in @(Get-CimInstance -ClassName Win32_LoggedOnUser -ErrorAction SilentlyContinue)) {
    try {
        $userByLogonId[[string]$l.Dependent.LogonId] = [string]$l.Antecedent.Domain + '\' + [string]$l.Antecedent.Name
    } catch { }
}
foreach ($s in @(Get-CimInstance -ClassName Win32_LogonSession -ErrorAction SilentlyContinue)) {
    $id = [string]$s.LogonId
    $user = ''
    if ($userByLogonId.ContainsKey($id)) { $user = $userByLogonId[$id] }
    Write-Row @('session', $user, (Get-LogonTypeName ([string]$s.LogonType)), '', (Format-Time $s.StartTime), '',
        "logon_id=$id auth=$($s.AuthenticationPackage)")
}

# --- accounts owning processes -----------------------------------------------------
$owners = @{}
foreach ($p in @(Get-CimInstance -ClassName Win32_Process -ErrorAction SilentlyContinue)) {
    $o = ''
    try {
        $r = Invoke-CimMethod -InputObject $p -MethodName GetOwner -ErrorAction Stop
        if ($r.ReturnValue -eq 0) { $o = [string]$r.Domain + '\' + [string]$r.User }
    } catch { }
    if (-not $o) { continue }
    if (-not $owners.ContainsKey($o)) { $owners[$o] = @{ 'count' = 0; 'oldest' = $null; 'names' = New-Object System.Collections.ArrayList } }
    $e = $owners[$o]
    $e['count']++
    if ($p.CreationDate -and ($null -eq $e['oldest'] -or $p.CreationDate -lt $e['oldest'])) { $e['oldest'] = $p.CreationDate }
    if (-not $e['names'].Contains([string]$p.Name)) { [void]$e['names'].Add([string]$p.Name) }
}
foreach ($o in $owners.Keys) {
    $e = $owners[$o]
    Write-Row @('process_owner', $o, '', '', (Format-Time $e['oldest']), '', "processes=$($e['count']) names=$($e['names'] -join ',')")
}

# --- event logs --------------------------------------------------------------------
$since = (Get-Date).AddDays(-$Days)
function Get-EventFields($Record) {
    # EventData/Data elements by Name; InnerText is empty for <Data Name="x" />.
    $fields = @{}
    try {
        $xml = [xml]$Record.ToXml()
        foreach ($d in @($xml.GetElementsByTagName('Data'))) {
            $n = $d.GetAttribute('Name')
            if ($n) { $fields[$n] = [string]$d.InnerText }
        }
    } catch { }
    return $fields
}
function Get-Field($Fields, [string]$Name) {
    if ($Fields.ContainsKey($Name)) { return $Fields[$Name] }
    return ''
}

$security = $null
try {
    # Fetch more than needed: machine and service logons are dropped below.
    $security = @(Get-WinEvent -FilterHashtable @{ LogName = 'Security'; Id = 4624, 4625, 4648; StartTime = $since } -MaxEvents ($max_events * 10) -ErrorAction Stop)
} catch {
    if ($_.Exception.Message -notmatch 'No events were found') { Write-Diag "cannot read the Security log: $($_.Exception.Message)" }
    $security = @()
}
$count = @{ 4624 = 0; 4625 = 0; 4648 = 0 }
foreach ($ev in $security) {
    $id = [int]$ev.Id
    if ($count[$id] -ge $max_events) { continue }
    $f = Get-EventFields $ev
    $user = (Get-Field $f 'TargetDomainName') + '\' + (Get-Field $f 'TargetUserName')
    $hostName = Get-Field $f 'IpAddress'
    $ws = Get-Field $f 'WorkstationName'
    if ($id -eq 4624) {
        $type = Get-Field $f 'LogonType'
        $sid = Get-Field $f 'TargetUserSid'
        if ($type -eq '5' -or $sid -eq 'S-1-5-18' -or $sid -eq 'S-1-5-19' -or $sid -eq 'S-1-5-20' -or (Get-Field $f 'TargetUserName') -like 'DWM-*' -or (Get-Field $f 'TargetUserName') -like 'UMFD-*') { continue }
        Write-Row @('logon', $user, (Get-LogonTypeName $type), $hostName, (Format-Time $ev.TimeCreated), '',
            "workstation=$ws process=$(Get-Field $f 'LogonProcessName') auth=$(Get-Field $f 'AuthenticationPackageName') logon_id=$(Get-Field $f 'TargetLogonId')")
    } elseif ($id -eq 4625) {
        Write-Row @('failed_logon', $user, (Get-LogonTypeName (Get-Field $f 'LogonType')), $hostName, (Format-Time $ev.TimeCreated), '',
            "workstation=$ws status=$(Get-Field $f 'Status') sub_status=$(Get-Field $f 'SubStatus') process=$(Get-Field $f 'ProcessName')")
    } else {
        $subject = (Get-Field $f 'SubjectDomainName') + '\' + (Get-Field $f 'SubjectUserName')
        Write-Row @('explicit_creds', $user, '', $hostName, (Format-Time $ev.TimeCreated), '',
            "by=$subject target_server=$(Get-Field $f 'TargetServerName') process=$(Get-Field $f 'ProcessName')")
    }
    $count[$id]++
}

$rdpNames = @{ 21 = 'logon'; 22 = 'shell start'; 23 = 'logoff'; 24 = 'disconnect'; 25 = 'reconnect' }
try {
    $rdp = @(Get-WinEvent -FilterHashtable @{ LogName = 'Microsoft-Windows-TerminalServices-LocalSessionManager/Operational'; Id = 21, 23, 24, 25; StartTime = $since } -MaxEvents $max_events -ErrorAction Stop)
    foreach ($ev in $rdp) {
        $user = ''; $addr = ''; $session = ''
        try {
            $xml = [xml]$ev.ToXml()
            foreach ($node in @($xml.GetElementsByTagName('User'))) { $user = [string]$node.InnerText }
            foreach ($node in @($xml.GetElementsByTagName('Address'))) { $addr = [string]$node.InnerText }
            foreach ($node in @($xml.GetElementsByTagName('SessionID'))) { $session = [string]$node.InnerText }
        } catch { }
        Write-Row @('rdp', $user, "session $session", $addr, (Format-Time $ev.TimeCreated), '', $rdpNames[[int]$ev.Id])
    }
} catch {
    if ($_.Exception.Message -notmatch 'No events were found') { Write-Diag "cannot read the RDP session log: $($_.Exception.Message)" }
}
exit 0
