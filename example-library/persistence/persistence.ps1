<#
.SYNOPSIS
    Autostart locations on Windows: Run/RunOnce keys, Winlogon, IFEO debuggers, AppInit,
    LSA packages, BootExecute, netsh helpers, services, scheduled tasks, Startup folders
    and WMI event subscriptions.
.DESCRIPTION
    Usage (quiver passes parameters as separate arguments, never through a shell string):
        persistence.ps1 [-include_vendor:$true|$false]
            -include_vendor  also list services and scheduled tasks whose program lives in
                             the Windows folder (default $true; registry autoruns, Startup
                             folders and WMI consumers are always listed)

    Output: CSV with a header line on stdout (same columns as the Linux and macOS entries):
        category,location,name,value,state,owner,modified,sha256
        location  registry key, task path, service key or file
        value     the command that runs
        state     enabled/disabled (StartupApproved), service start mode and state, task state
        owner     the user hive (SID and profile folder), service account or task principal
        modified  task registration date or file modification time (UTC)
        sha256    of the program the command points to, when it resolves to a local file
    Only hives that are already loaded (logged-on users) are read: loading other users'
    NTUSER.DAT would modify the registry. UNC paths are never touched.
    Read-only. Exit 0 on success, non-zero on bad parameters.
#>
[CmdletBinding()]
param(
    [switch]$include_vendor = $true
)
Set-StrictMode -Version 2
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'SilentlyContinue'
if ([Console]::IsOutputRedirected) {
    try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding($false) } catch { }
}

function Write-Diag([string]$Message) { [Console]::Error.WriteLine("persistence: $Message") }
function Format-Time($Value) {
    if ($null -eq $Value) { return '' }
    try { return ([datetime]$Value).ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [Globalization.CultureInfo]::InvariantCulture) }
    catch { return '' }
}
$Columns = @('category', 'location', 'name', 'value', 'state', 'owner', 'modified', 'sha256')
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
$hashCache = @{}

# The program a command line points to, if it is a local file (UNC paths are skipped so
# that nothing here touches the network).
function Resolve-Program([string]$Command) {
    if (-not $Command) { return '' }
    $c = [Environment]::ExpandEnvironmentVariables($Command.Trim())
    if ($c.StartsWith('"')) {
        $end = $c.IndexOf('"', 1)
        if ($end -gt 1) { $c = $c.Substring(1, $end - 1) }
    } else {
        $m = [regex]::Match($c, '^(.+?\.(exe|dll|sys|bat|cmd|ps1|vbs|vbe|js|jse|wsf|hta|com|scr|cpl|ocx|msi))(\s|,|$)', 'IgnoreCase')
        if ($m.Success) { $c = $m.Groups[1].Value } else { $c = @($c -split '\s+')[0] }
    }
    if ($c.StartsWith('\??\')) { $c = $c.Substring(4) }
    if ($c -match '^\\SystemRoot\\') { $c = $WinDir + $c.Substring(11) }
    if ($c -match '^(?i)system32\\') { $c = Join-Path $WinDir $c }
    if ($c.StartsWith('\\')) { return '' }
    if ($c -notmatch '^[A-Za-z]:\\') {
        foreach ($dir in @((Join-Path $WinDir 'System32'), $WinDir)) {
            foreach ($cand in @((Join-Path $dir $c), (Join-Path $dir ($c + '.exe')))) {
                if (Test-Path -LiteralPath $cand -PathType Leaf) { return $cand }
            }
        }
        return ''
    }
    if (Test-Path -LiteralPath $c -PathType Leaf) { return $c }
    return ''
}
function Get-Sha([string]$File) {
    if (-not $File) { return '' }
    if (-not $hashCache.ContainsKey($File)) {
        $h = ''
        try { $h = (Get-FileHash -LiteralPath $File -Algorithm SHA256 -ErrorAction Stop).Hash.ToLowerInvariant() } catch { }
        $hashCache[$File] = $h
    }
    return $hashCache[$File]
}
function Test-InWindows([string]$File) {
    return ($File -and $WinDir -and $File.StartsWith($WinDir + '\', [StringComparison]::OrdinalIgnoreCase))
}
function Get-RegValues([string]$Path) {
    # name -> raw value (environment variables not expanded)
    $result = [ordered]@{}
    try {
        $key = Get-Item -LiteralPath $Path -ErrorAction Stop
        foreach ($n in $key.GetValueNames()) {
            $result[$n] = $key.GetValue($n, $null, 'DoNotExpandEnvironmentNames')
        }
    } catch { }
    return $result
}
function Format-RegValue($Value) {
    if ($null -eq $Value) { return '' }
    if ($Value -is [byte[]]) { return (($Value | ForEach-Object { $_.ToString('x2') }) -join '') }
    if ($Value -is [array]) { return ($Value -join ';') }
    return [string]$Value
}

# --- hives: HKLM plus every loaded user hive ---------------------------------------
$profiles = @{}
foreach ($p in @(Get-ChildItem -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList' -ErrorAction SilentlyContinue)) {
    $img = ''
    try { $img = [string](Get-ItemProperty -LiteralPath $p.PSPath -ErrorAction Stop).ProfileImagePath } catch { }
    $profiles[$p.PSChildName] = $img
}
$hives = New-Object System.Collections.ArrayList
[void]$hives.Add(@('HKLM:', 'machine'))
foreach ($h in @(Get-ChildItem -LiteralPath 'Registry::HKEY_USERS' -ErrorAction SilentlyContinue)) {
    $sid = $h.PSChildName
    if ($sid -like '*_Classes') { continue }
    $label = $sid
    if ($profiles.ContainsKey($sid) -and $profiles[$sid]) { $label = $sid + ' (' + (Split-Path -Leaf $profiles[$sid]) + ')' }
    [void]$hives.Add(@("Registry::HKEY_USERS\$sid", $label))
}

# --- Run keys ----------------------------------------------------------------------
$runKeys = @(
    'Software\Microsoft\Windows\CurrentVersion\Run',
    'Software\Microsoft\Windows\CurrentVersion\RunOnce',
    'Software\Microsoft\Windows\CurrentVersion\RunOnceEx',
    'Software\Microsoft\Windows\CurrentVersion\RunServices',
    'Software\Microsoft\Windows\CurrentVersion\RunServicesOnce',
    'Software\Microsoft\Windows\CurrentVersion\Policies\Explorer\Run',
    'Software\WOW6432Node\Microsoft\Windows\CurrentVersion\Run',
    'Software\WOW6432Node\Microsoft\Windows\CurrentVersion\RunOnce',
    'Software\WOW6432Node\Microsoft\Windows\CurrentVersion\Policies\Explorer\Run'
)
foreach ($hive in $hives) {
    $root = $hive[0]; $owner = $hive[1]
    # Task Manager's enable/disable switch: first byte even = enabled, odd = disabled.
    $approved = @{}
    foreach ($sub in @('Run', 'Run32', 'StartupFolder')) {
        $vals = Get-RegValues "$root\Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\$sub"
        foreach ($n in $vals.Keys) {
            $b = $vals[$n]
            if ($b -is [byte[]] -and $b.Length -gt 0) {
                if (($b[0] % 2) -eq 1) { $approved[$n] = 'disabled' } else { $approved[$n] = 'enabled' }
            }
        }
    }
    foreach ($k in $runKeys) {
        $path = "$root\$k"
        $vals = Get-RegValues $path
        foreach ($n in $vals.Keys) {
            $cmd = Format-RegValue $vals[$n]
            $state = 'enabled'
            if ($approved.ContainsKey($n)) { $state = $approved[$n] }
            Write-Row @('run_key', $path, $n, $cmd, $state, $owner, '', (Get-Sha (Resolve-Program $cmd)))
        }
    }
    # Legacy load/run values
    $vals = Get-RegValues "$root\Software\Microsoft\Windows NT\CurrentVersion\Windows"
    foreach ($n in @('Load', 'Run')) {
        if ($vals.Contains($n) -and (Format-RegValue $vals[$n])) {
            $cmd = Format-RegValue $vals[$n]
            Write-Row @('run_key', "$root\Software\Microsoft\Windows NT\CurrentVersion\Windows", $n, $cmd, '', $owner, '', (Get-Sha (Resolve-Program $cmd)))
        }
    }
}

# --- Winlogon, AppInit, LSA, BootExecute, netsh ------------------------------------
$wl = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon'
$vals = Get-RegValues $wl
foreach ($n in @('Shell', 'Userinit', 'Taskman', 'AppSetup', 'GinaDLL', 'System')) {
    if ($vals.Contains($n)) {
        $cmd = Format-RegValue $vals[$n]
        Write-Row @('winlogon', $wl, $n, $cmd, '', 'machine', '', (Get-Sha (Resolve-Program $cmd)))
    }
}
foreach ($n in @(Get-ChildItem -LiteralPath "$wl\Notify" -ErrorAction SilentlyContinue)) {
    $dll = Format-RegValue (Get-RegValues $n.PSPath)['DLLName']
    Write-Row @('winlogon_notify', "$wl\Notify", $n.PSChildName, $dll, '', 'machine', '', (Get-Sha (Resolve-Program $dll)))
}
foreach ($k in @('HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Windows', 'HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows NT\CurrentVersion\Windows')) {
    $vals = Get-RegValues $k
    if ($vals.Contains('AppInit_DLLs') -and (Format-RegValue $vals['AppInit_DLLs'])) {
        $state = 'LoadAppInit_DLLs=' + (Format-RegValue $vals['LoadAppInit_DLLs'])
        Write-Row @('appinit_dlls', $k, 'AppInit_DLLs', (Format-RegValue $vals['AppInit_DLLs']), $state, 'machine', '', '')
    }
}
$lsa = 'HKLM:\SYSTEM\CurrentControlSet\Control\Lsa'
$vals = Get-RegValues $lsa
foreach ($n in @('Authentication Packages', 'Notification Packages', 'Security Packages')) {
    if ($vals.Contains($n)) { Write-Row @('lsa_package', $lsa, $n, (Format-RegValue $vals[$n]), '', 'machine', '', '') }
}
$sm = 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager'
$vals = Get-RegValues $sm
foreach ($n in @('BootExecute', 'SetupExecute', 'Execute')) {
    if ($vals.Contains($n)) { Write-Row @('boot_execute', $sm, $n, (Format-RegValue $vals[$n]), '', 'machine', '', '') }
}
$vals = Get-RegValues 'HKLM:\SOFTWARE\Microsoft\NetSh'
foreach ($n in $vals.Keys) {
    $dll = Format-RegValue $vals[$n]
    Write-Row @('netsh_helper', 'HKLM:\SOFTWARE\Microsoft\NetSh', $n, $dll, '', 'machine', '', (Get-Sha (Resolve-Program $dll)))
}

# --- Image File Execution Options: debuggers and silent-exit monitors --------------
$ifeo = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Image File Execution Options'
foreach ($k in @(Get-ChildItem -LiteralPath $ifeo -ErrorAction SilentlyContinue)) {
    $vals = Get-RegValues $k.PSPath
    if ($vals.Contains('Debugger')) {
        $cmd = Format-RegValue $vals['Debugger']
        Write-Row @('ifeo_debugger', "$ifeo\$($k.PSChildName)", $k.PSChildName, $cmd, '', 'machine', '', (Get-Sha (Resolve-Program $cmd)))
    }
}
$spe = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\SilentProcessExit'
foreach ($k in @(Get-ChildItem -LiteralPath $spe -ErrorAction SilentlyContinue)) {
    $vals = Get-RegValues $k.PSPath
    if ($vals.Contains('MonitorProcess')) {
        $cmd = Format-RegValue $vals['MonitorProcess']
        Write-Row @('silent_process_exit', "$spe\$($k.PSChildName)", $k.PSChildName, $cmd, '', 'machine', '', (Get-Sha (Resolve-Program $cmd)))
    }
}

# --- services ----------------------------------------------------------------------
$services = @(Get-CimInstance -ClassName Win32_Service -ErrorAction SilentlyContinue)
if ($services.Count -eq 0) { Write-Diag 'Win32_Service returned nothing' }
foreach ($s in $services) {
    $cmd = [string]$s.PathName
    $svcKey = "HKLM:\SYSTEM\CurrentControlSet\Services\$($s.Name)"
    $dll = Format-RegValue (Get-RegValues "$svcKey\Parameters")['ServiceDll']
    if (-not $dll) { $dll = Format-RegValue (Get-RegValues $svcKey)['ServiceDll'] }
    $prog = Resolve-Program $cmd
    $dllPath = Resolve-Program $dll
    if (-not $include_vendor -and (Test-InWindows $prog) -and ((-not $dll) -or (Test-InWindows $dllPath))) { continue }
    $value = $cmd
    if ($dll) { $value = "$cmd (ServiceDll=$dll)"; if ($dllPath) { $prog = $dllPath } }
    $modified = ''
    if ($prog) { try { $modified = Format-Time (Get-Item -LiteralPath $prog -ErrorAction Stop).LastWriteTime } catch { } }
    Write-Row @('service', $svcKey, $s.Name, $value, "$($s.StartMode) $($s.State)", $s.StartName, $modified, (Get-Sha $prog))
}

# --- scheduled tasks ---------------------------------------------------------------
if (Get-Command -Name Get-ScheduledTask -ErrorAction SilentlyContinue) {
    foreach ($t in @(Get-ScheduledTask -ErrorAction SilentlyContinue)) {
        $principal = ''
        try { $principal = [string]$t.Principal.UserId } catch { }
        $registered = ''
        try { if ($t.Date) { $registered = Format-Time ([datetime]::Parse($t.Date, [Globalization.CultureInfo]::InvariantCulture)) } } catch { }
        foreach ($a in @($t.Actions)) {
            if ($null -eq $a) { continue }
            $cmd = ''
            $props = $a.PSObject.Properties
            if ($props['Execute'] -and $a.Execute) {
                $cmd = [string]$a.Execute
                if ($props['Arguments'] -and $a.Arguments) { $cmd += ' ' + [string]$a.Arguments }
            } elseif ($props['ClassId'] -and $a.ClassId) {
                $cmd = 'COM handler ' + [string]$a.ClassId
                if ($props['Data'] -and $a.Data) { $cmd += ' ' + [string]$a.Data }
            }
            $prog = ''
            if ($props['Execute'] -and $a.Execute) { $prog = Resolve-Program ([string]$a.Execute) }
            if (-not $include_vendor -and $t.TaskPath -like '\Microsoft\*' -and ((-not $prog) -or (Test-InWindows $prog))) { continue }
            Write-Row @('scheduled_task', ($t.TaskPath + $t.TaskName), $t.TaskName, $cmd, [string]$t.State, $principal, $registered, (Get-Sha $prog))
        }
    }
} else {
    Write-Diag 'Get-ScheduledTask not available (Windows 7 / 2008 R2); scheduled tasks not listed'
}

# --- Startup folders ---------------------------------------------------------------
$startupDirs = @(Join-Path ([string]$env:ProgramData) 'Microsoft\Windows\Start Menu\Programs\StartUp')
foreach ($u in @(Get-ChildItem -LiteralPath (Join-Path ([string]$env:SystemDrive + '\') 'Users') -Directory -Force -ErrorAction SilentlyContinue)) {
    $startupDirs += Join-Path $u.FullName 'AppData\Roaming\Microsoft\Windows\Start Menu\Programs\Startup'
}
$shell = $null
try { $shell = New-Object -ComObject WScript.Shell } catch { }
foreach ($d in $startupDirs) {
    foreach ($f in @(Get-ChildItem -LiteralPath $d -File -Force -ErrorAction SilentlyContinue)) {
        if ($f.Name -eq 'desktop.ini') { continue }
        $value = ''
        $target = $f.FullName
        if ($f.Extension -eq '.lnk' -and $shell) {
            # CreateShortcut on an existing .lnk only reads it; nothing is saved.
            try {
                $lnk = $shell.CreateShortcut($f.FullName)
                $value = ([string]$lnk.TargetPath + ' ' + [string]$lnk.Arguments).Trim()
                $target = Resolve-Program $value
            } catch { }
        }
        Write-Row @('startup_folder', $f.FullName, $f.Name, $value, '', $d, (Format-Time $f.LastWriteTime), (Get-Sha $target))
    }
}

# --- WMI event subscriptions -------------------------------------------------------
$ns = 'root\subscription'
foreach ($c in @(Get-CimInstance -Namespace $ns -ClassName CommandLineEventConsumer -ErrorAction SilentlyContinue)) {
    $cmd = [string]$c.CommandLineTemplate
    if (-not $cmd) { $cmd = [string]$c.ExecutablePath }
    Write-Row @('wmi_consumer', "$ns\CommandLineEventConsumer", $c.Name, $cmd, '', [string]$c.CreatorSID, '', (Get-Sha (Resolve-Program $cmd)))
}
foreach ($c in @(Get-CimInstance -Namespace $ns -ClassName ActiveScriptEventConsumer -ErrorAction SilentlyContinue)) {
    $text = [string]$c.ScriptFileName
    if (-not $text) { $text = [string]$c.ScriptText }
    Write-Row @('wmi_consumer', "$ns\ActiveScriptEventConsumer", $c.Name, "$($c.ScriptingEngine): $text", '', [string]$c.CreatorSID, '', '')
}
foreach ($f in @(Get-CimInstance -Namespace $ns -ClassName __EventFilter -ErrorAction SilentlyContinue)) {
    Write-Row @('wmi_filter', "$ns\__EventFilter", $f.Name, [string]$f.Query, '', [string]$f.CreatorSID, '', '')
}
foreach ($b in @(Get-CimInstance -Namespace $ns -ClassName __FilterToConsumerBinding -ErrorAction SilentlyContinue)) {
    $filter = ''; $consumer = ''
    try { $filter = [string]$b.Filter.Name } catch { }
    try { $consumer = [string]$b.Consumer.Name } catch { }
    Write-Row @('wmi_binding', "$ns\__FilterToConsumerBinding", $consumer, "filter=$filter", '', [string]$b.CreatorSID, '', '')
}
exit 0
