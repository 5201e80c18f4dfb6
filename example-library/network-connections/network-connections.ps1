<#
.SYNOPSIS
    TCP and UDP sockets with the owning process (Windows).
.DESCRIPTION
    Usage (quiver passes parameters as separate arguments, never through a shell string):
        network-connections.ps1          (no parameters)

    Output: CSV with a header line on stdout (same columns as the Linux and macOS entries):
        proto,local_address,local_port,remote_address,remote_port,state,pid,process,exe,user,inode
    Read from Get-NetTCPConnection and Get-NetUDPEndpoint; on systems without the
    NetTCPIP module the output of `netstat -ano` is parsed instead. inode is empty on
    Windows. user is the owner of the owning process (needs elevation for other users).
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

function Write-Diag([string]$Message) { [Console]::Error.WriteLine("network-connections: $Message") }
$Columns = @('proto', 'local_address', 'local_port', 'remote_address', 'remote_port', 'state', 'pid', 'process', 'exe', 'user', 'inode')
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

$procById = @{}
foreach ($p in @(Get-CimInstance -ClassName Win32_Process -ErrorAction SilentlyContinue)) {
    $procById[[int]$p.ProcessId] = $p
}
$ownerCache = @{}
function Get-ProcInfo([int]$ProcessId) {
    $name = ''; $exe = ''; $user = ''
    if ($procById.ContainsKey($ProcessId)) {
        $p = $procById[$ProcessId]
        $name = [string]$p.Name
        $exe = [string]$p.ExecutablePath
        if (-not $ownerCache.ContainsKey($ProcessId)) {
            $o = ''
            try {
                $r = Invoke-CimMethod -InputObject $p -MethodName GetOwner -ErrorAction Stop
                if ($r.ReturnValue -eq 0) { $o = [string]$r.Domain + '\' + [string]$r.User }
            } catch { }
            $ownerCache[$ProcessId] = $o
        }
        $user = $ownerCache[$ProcessId]
    } elseif ($ProcessId -eq 4) {
        $name = 'System'
    }
    return @($name, $exe, $user)
}

$stateMap = @{
    'Listen' = 'LISTEN'; 'Established' = 'ESTABLISHED'; 'TimeWait' = 'TIME_WAIT'; 'CloseWait' = 'CLOSE_WAIT'
    'SynSent' = 'SYN_SENT'; 'SynReceived' = 'SYN_RECV'; 'FinWait1' = 'FIN_WAIT1'; 'FinWait2' = 'FIN_WAIT2'
    'LastAck' = 'LAST_ACK'; 'Closing' = 'CLOSING'; 'Closed' = 'CLOSE'; 'Bound' = 'BOUND'; 'DeleteTCB' = 'DELETE_TCB'
    # netstat spellings (keys are case-insensitive, so ESTABLISHED/CLOSING/CLOSED match above)
    'LISTENING' = 'LISTEN'; 'TIME_WAIT' = 'TIME_WAIT'; 'CLOSE_WAIT' = 'CLOSE_WAIT'; 'SYN_SENT' = 'SYN_SENT'
    'SYN_RECEIVED' = 'SYN_RECV'; 'FIN_WAIT_1' = 'FIN_WAIT1'; 'FIN_WAIT_2' = 'FIN_WAIT2'; 'LAST_ACK' = 'LAST_ACK'
}
function Get-State([string]$State) {
    if ($stateMap.ContainsKey($State)) { return $stateMap[$State] }
    return $State
}
function Get-Proto([string]$Base, [string]$Address) {
    if ($Address.Contains(':')) { return $Base + '6' }
    return $Base
}

$haveNetTcpIp = $null -ne (Get-Command -Name Get-NetTCPConnection -ErrorAction SilentlyContinue)
if ($haveNetTcpIp) {
    foreach ($c in @(Get-NetTCPConnection -ErrorAction SilentlyContinue)) {
        $info = Get-ProcInfo ([int]$c.OwningProcess)
        Write-Row @((Get-Proto 'tcp' ([string]$c.LocalAddress)), $c.LocalAddress, $c.LocalPort, $c.RemoteAddress,
            $c.RemotePort, (Get-State ([string]$c.State)), $c.OwningProcess, $info[0], $info[1], $info[2], '')
    }
    foreach ($u in @(Get-NetUDPEndpoint -ErrorAction SilentlyContinue)) {
        $info = Get-ProcInfo ([int]$u.OwningProcess)
        Write-Row @((Get-Proto 'udp' ([string]$u.LocalAddress)), $u.LocalAddress, $u.LocalPort, '', '',
            'UNCONN', $u.OwningProcess, $info[0], $info[1], $info[2], '')
    }
} else {
    Write-Diag 'Get-NetTCPConnection not available; parsing netstat -ano'
    # "  TCP    10.0.0.5:49712     52.1.2.3:443     ESTABLISHED     1234"
    # "  UDP    [::]:123           *:*                              5678"
    foreach ($line in @(& netstat.exe -ano 2>$null)) {
        $w = @(([string]$line).Trim() -split '\s+')
        if ($w.Count -lt 4 -or ($w[0] -ne 'TCP' -and $w[0] -ne 'UDP')) { continue }
        $local = $w[1]; $remote = $w[2]
        $lport = $local.Substring($local.LastIndexOf(':') + 1)
        $laddr = $local.Substring(0, $local.LastIndexOf(':')).Trim('[', ']')
        $raddr = ''; $rport = ''
        if ($remote -ne '*:*') {
            $rport = $remote.Substring($remote.LastIndexOf(':') + 1)
            $raddr = $remote.Substring(0, $remote.LastIndexOf(':')).Trim('[', ']')
        }
        if ($w[0] -eq 'TCP') { $state = Get-State $w[3]; $procId = $w[$w.Count - 1] } else { $state = 'UNCONN'; $procId = $w[$w.Count - 1] }
        $info = Get-ProcInfo ([int]$procId)
        Write-Row @((Get-Proto $w[0].ToLowerInvariant() $laddr), $laddr, $lport, $raddr, $rport, $state, $procId,
            $info[0], $info[1], $info[2], '')
    }
}
exit 0
