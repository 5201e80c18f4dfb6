<#
.SYNOPSIS
    A quick first look in one run, no memory acquisition: host facts, processes, network
    sockets, logon sessions and the most abused persistence spots (Windows).
.DESCRIPTION
    Usage (quiver passes parameters as separate arguments, never through a shell string):
        triage-bundle.ps1          (no parameters)

    Output: JSON lines on stdout; every object has a "section" field (same sections as the
    Linux and macOS entries):
        host         hostname, os, kernel, boot_time, collected_at, addresses
        process      pid, ppid, parent, name, user, start_time, exe, exe_deleted, cmdline
        network      proto, local, remote, state, pid, process
        user         kind session (logon sessions with their account and logon type) or
                     admin (members of the local Administrators group)
        persistence  kind run_key, service (auto-start, program outside the Windows
                     folder), scheduled_task (outside \Microsoft\), startup_folder,
                     wmi_consumer
    For full detail run process-list, network-connections, user-logons and persistence.
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

function Write-Diag([string]$Message) { [Console]::Error.WriteLine("triage-bundle: $Message") }
function Format-Time($Value) {
    if ($null -eq $Value) { return '' }
    try { return ([datetime]$Value).ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [Globalization.CultureInfo]::InvariantCulture) }
    catch { return '' }
}
function Write-Json($Ordered) { [pscustomobject]$Ordered | ConvertTo-Json -Compress }
$WinDir = [string]$env:SystemRoot
function Test-InWindows([string]$Command) {
    $c = [Environment]::ExpandEnvironmentVariables($Command).Trim().Trim('"')
    return ($WinDir -and ($c.StartsWith($WinDir + '\', [StringComparison]::OrdinalIgnoreCase) -or $c -like '\SystemRoot\*' -or $c -like 'system32\*'))
}

# --- host --------------------------------------------------------------------------
$os = Get-CimInstance -ClassName Win32_OperatingSystem -ErrorAction SilentlyContinue
$addresses = @()
foreach ($a in @(Get-CimInstance -ClassName Win32_NetworkAdapterConfiguration -Filter 'IPEnabled = True' -ErrorAction SilentlyContinue)) {
    foreach ($ip in @($a.IPAddress)) { if ($ip) { $addresses += "$($a.Description)=$ip" } }
}
$osName = ''; $kernel = ''; $boot = ''
if ($os) { $osName = "$($os.Caption) $($os.Version)"; $kernel = [string]$os.BuildNumber; $boot = Format-Time $os.LastBootUpTime }
Write-Json ([ordered]@{ section = 'host'; hostname = [string]$env:COMPUTERNAME; os = $osName; kernel = $kernel
    boot_time = $boot; collected_at = (Format-Time (Get-Date)); addresses = ($addresses -join ' ') })

# --- processes ---------------------------------------------------------------------
$procs = @(Get-CimInstance -ClassName Win32_Process -ErrorAction SilentlyContinue)
if ($procs.Count -eq 0) { Write-Diag 'Win32_Process returned nothing' }
$nameById = @{}
foreach ($p in $procs) { $nameById[[int]$p.ProcessId] = [string]$p.Name }
foreach ($p in $procs) {
    $user = ''
    try {
        $r = Invoke-CimMethod -InputObject $p -MethodName GetOwner -ErrorAction Stop
        if ($r.ReturnValue -eq 0) { $user = [string]$r.Domain + '\' + [string]$r.User }
    } catch { }
    $exe = [string]$p.ExecutablePath
    $deleted = $null
    if ($exe -and -not $exe.StartsWith('\\')) { $deleted = -not (Test-Path -LiteralPath $exe -PathType Leaf) }
    $parent = ''
    if ($nameById.ContainsKey([int]$p.ParentProcessId)) { $parent = $nameById[[int]$p.ParentProcessId] }
    Write-Json ([ordered]@{ section = 'process'; pid = [int]$p.ProcessId; ppid = [int]$p.ParentProcessId; parent = $parent
        name = [string]$p.Name; user = $user; start_time = (Format-Time $p.CreationDate); exe = $exe
        exe_deleted = $deleted; cmdline = [string]$p.CommandLine })
}

# --- network -----------------------------------------------------------------------
if (Get-Command -Name Get-NetTCPConnection -ErrorAction SilentlyContinue) {
    foreach ($c in @(Get-NetTCPConnection -ErrorAction SilentlyContinue)) {
        $proto = 'tcp'; if (([string]$c.LocalAddress).Contains(':')) { $proto = 'tcp6' }
        $owner = ''; if ($nameById.ContainsKey([int]$c.OwningProcess)) { $owner = $nameById[[int]$c.OwningProcess] }
        Write-Json ([ordered]@{ section = 'network'; proto = $proto; local = "$($c.LocalAddress):$($c.LocalPort)"
            remote = "$($c.RemoteAddress):$($c.RemotePort)"; state = [string]$c.State; pid = [int]$c.OwningProcess; process = $owner })
    }
    foreach ($u in @(Get-NetUDPEndpoint -ErrorAction SilentlyContinue)) {
        $proto = 'udp'; if (([string]$u.LocalAddress).Contains(':')) { $proto = 'udp6' }
        $owner = ''; if ($nameById.ContainsKey([int]$u.OwningProcess)) { $owner = $nameById[[int]$u.OwningProcess] }
        Write-Json ([ordered]@{ section = 'network'; proto = $proto; local = "$($u.LocalAddress):$($u.LocalPort)"
            remote = ''; state = 'UNCONN'; pid = [int]$u.OwningProcess; process = $owner })
    }
} else {
    foreach ($line in @(& netstat.exe -ano 2>$null)) {
        $w = @(([string]$line).Trim() -split '\s+')
        if ($w.Count -lt 4 -or ($w[0] -ne 'TCP' -and $w[0] -ne 'UDP')) { continue }
        $procId = [int]$w[$w.Count - 1]
        $state = 'UNCONN'; if ($w[0] -eq 'TCP') { $state = $w[3] }
        $owner = ''; if ($nameById.ContainsKey($procId)) { $owner = $nameById[$procId] }
        Write-Json ([ordered]@{ section = 'network'; proto = $w[0].ToLowerInvariant(); local = $w[1]; remote = $w[2]
            state = $state; pid = $procId; process = $owner })
    }
}

# --- users -------------------------------------------------------------------------
$userByLogonId = @{}
foreach ($l in @(Get-CimInstance -ClassName Win32_LoggedOnUser -ErrorAction SilentlyContinue)) {
    try { $userByLogonId[[string]$l.Dependent.LogonId] = [string]$l.Antecedent.Domain + '\' + [string]$l.Antecedent.Name } catch { }
}
foreach ($s in @(Get-CimInstance -ClassName Win32_LogonSession -ErrorAction SilentlyContinue)) {
    $id = [string]$s.LogonId
    if (-not $userByLogonId.ContainsKey($id)) { continue }
    Write-Json ([ordered]@{ section = 'user'; kind = 'session'; user = $userByLogonId[$id]; terminal = "logon_type=$($s.LogonType)"
        detail = "logon_id=$id start=$(Format-Time $s.StartTime) auth=$($s.AuthenticationPackage)" })
}
# Members of the local Administrators group, found by its well-known SID (the name is
# localized). Only the membership references are read; no account is resolved remotely.
try {
    $group = @(Get-CimInstance -ClassName Win32_Group -Filter "LocalAccount = True AND SID = 'S-1-5-32-544'" -ErrorAction Stop)[0]
    $filter = "GroupComponent = ""Win32_Group.Domain='$($group.Domain)',Name='$($group.Name)'"""
    foreach ($m in @(Get-CimInstance -ClassName Win32_GroupUser -Filter $filter -ErrorAction Stop)) {
        Write-Json ([ordered]@{ section = 'user'; kind = 'admin'; user = [string]$m.PartComponent.Domain + '\' + [string]$m.PartComponent.Name
            terminal = ''; detail = "member of $($group.Name)" })
    }
} catch { Write-Diag "cannot list Administrators members: $($_.Exception.Message)" }

# --- persistence (compact) ---------------------------------------------------------
$runRoots = @('HKLM:')
foreach ($h in @(Get-ChildItem -LiteralPath 'Registry::HKEY_USERS' -ErrorAction SilentlyContinue)) {
    if ($h.PSChildName -notlike '*_Classes') { $runRoots += "Registry::HKEY_USERS\$($h.PSChildName)" }
}
foreach ($root in $runRoots) {
    foreach ($k in @('Software\Microsoft\Windows\CurrentVersion\Run', 'Software\Microsoft\Windows\CurrentVersion\RunOnce',
            'Software\WOW6432Node\Microsoft\Windows\CurrentVersion\Run')) {
        try {
            $key = Get-Item -LiteralPath "$root\$k" -ErrorAction Stop
            foreach ($n in $key.GetValueNames()) {
                Write-Json ([ordered]@{ section = 'persistence'; kind = 'run_key'; location = "$root\$k\$n"
                    value = [string]$key.GetValue($n, $null, 'DoNotExpandEnvironmentNames') })
            }
        } catch { }
    }
}
foreach ($s in @(Get-CimInstance -ClassName Win32_Service -Filter "StartMode = 'Auto'" -ErrorAction SilentlyContinue)) {
    if (Test-InWindows ([string]$s.PathName)) { continue }
    Write-Json ([ordered]@{ section = 'persistence'; kind = 'service'; location = [string]$s.Name
        value = "$($s.PathName) [$($s.State), $($s.StartName)]" })
}
if (Get-Command -Name Get-ScheduledTask -ErrorAction SilentlyContinue) {
    foreach ($t in @(Get-ScheduledTask -ErrorAction SilentlyContinue)) {
        if ($t.TaskPath -like '\Microsoft\*') { continue }
        $cmds = @()
        foreach ($a in @($t.Actions)) {
            if ($null -ne $a -and $a.PSObject.Properties['Execute'] -and $a.Execute) { $cmds += ([string]$a.Execute + ' ' + [string]$a.Arguments).Trim() }
        }
        Write-Json ([ordered]@{ section = 'persistence'; kind = 'scheduled_task'; location = $t.TaskPath + $t.TaskName
            value = ($cmds -join ' ; ') + " [$($t.State)]" })
    }
}
$startup = @(Join-Path ([string]$env:ProgramData) 'Microsoft\Windows\Start Menu\Programs\StartUp')
foreach ($u in @(Get-ChildItem -LiteralPath (Join-Path ([string]$env:SystemDrive + '\') 'Users') -Directory -Force -ErrorAction SilentlyContinue)) {
    $startup += Join-Path $u.FullName 'AppData\Roaming\Microsoft\Windows\Start Menu\Programs\Startup'
}
foreach ($d in $startup) {
    foreach ($f in @(Get-ChildItem -LiteralPath $d -File -Force -ErrorAction SilentlyContinue)) {
        if ($f.Name -eq 'desktop.ini') { continue }
        Write-Json ([ordered]@{ section = 'persistence'; kind = 'startup_folder'; location = $f.FullName
            value = "modified $(Format-Time $f.LastWriteTime)" })
    }
}
foreach ($c in @(Get-CimInstance -Namespace 'root\subscription' -ClassName CommandLineEventConsumer -ErrorAction SilentlyContinue)) {
    Write-Json ([ordered]@{ section = 'persistence'; kind = 'wmi_consumer'; location = [string]$c.Name; value = [string]$c.CommandLineTemplate })
}
exit 0
