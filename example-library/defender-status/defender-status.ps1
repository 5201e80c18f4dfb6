<#
.SYNOPSIS
    Microsoft Defender Antivirus health, protection settings, exclusions, recent
    detections and tampering events, plus the antivirus products Security Center knows.
.DESCRIPTION
    Usage (quiver passes parameters as separate arguments, never through a shell string):
        defender-status.ps1 [-Days N]
            -Days   how far back to report detections and Defender events (default 7)

    Output: JSON lines on stdout; every object has a "section" field:
        status      Get-MpComputerStatus: engine/signature versions and ages, which
                    protections are on, tamper protection, last scans
        preference  protection switches from Get-MpPreference (Disable* flags, cloud and
                    sample submission, PUA, network protection, ASR rules)
        exclusion   one object per excluded path, process, extension or IP address -
                    attackers add exclusions before dropping tools
        detection   Get-MpThreatDetection entries newer than -Days
        event       Defender operational log: 1116/1117 detections and actions, 5001
                    real-time protection disabled, 5007 configuration changed, 5010/5012
                    scanning disabled, 5013 tamper protection blocked a change
        av_product  root\SecurityCenter2 AntiVirusProduct (workstations only)
    Strictly read-only: only Get-* cmdlets; no setting, scan or update is triggered.
    Exclusions are only visible to administrators. Exit 0 on success, non-zero on bad
    parameters.
#>
[CmdletBinding()]
param(
    [int]$Days = 7
)
Set-StrictMode -Version 2
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'SilentlyContinue'
if ([Console]::IsOutputRedirected) {
    try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding($false) } catch { }
}

function Write-Diag([string]$Message) { [Console]::Error.WriteLine("defender-status: $Message") }
if ($Days -lt 1) { Write-Diag "-Days must be positive, got: $Days"; exit 2 }
function Format-Time($Value) {
    if ($null -eq $Value) { return $null }
    try { return ([datetime]$Value).ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [Globalization.CultureInfo]::InvariantCulture) }
    catch { return $null }
}
function Write-Json($Ordered) { [pscustomobject]$Ordered | ConvertTo-Json -Compress -Depth 3 }
# Copy selected properties; dates become UTC strings, arrays are joined with ";".
function Select-Props($Object, [string[]]$Names, [string]$Section) {
    $o = [ordered]@{ section = $Section }
    foreach ($n in $Names) {
        $p = $Object.PSObject.Properties[$n]
        $v = $null
        if ($null -ne $p) { $v = $p.Value }
        if ($v -is [datetime]) { $v = Format-Time $v }
        elseif ($v -is [array]) { $v = (@($v) | ForEach-Object { [string]$_ }) -join ';' }
        elseif ($null -ne $v -and -not ($v -is [bool] -or $v -is [int] -or $v -is [long] -or $v -is [uint32] -or $v -is [double])) { $v = [string]$v }
        $o[$n] = $v
    }
    return $o
}
$since = (Get-Date).AddDays(-$Days)

$haveDefender = $null -ne (Get-Command -Name Get-MpComputerStatus -ErrorAction SilentlyContinue)
if ($haveDefender) {
    try {
        $s = Get-MpComputerStatus -ErrorAction Stop
        Write-Json (Select-Props $s @('AMRunningMode', 'AMServiceEnabled', 'AMProductVersion', 'AMEngineVersion',
            'AntivirusEnabled', 'AntispywareEnabled', 'RealTimeProtectionEnabled', 'BehaviorMonitorEnabled',
            'IoavProtectionEnabled', 'OnAccessProtectionEnabled', 'NISEnabled', 'IsTamperProtected', 'IsVirtualMachine',
            'AntivirusSignatureVersion', 'AntivirusSignatureLastUpdated', 'AntivirusSignatureAge', 'DefenderSignaturesOutOfDate',
            'QuickScanEndTime', 'FullScanEndTime', 'ComputerState', 'RebootRequired') 'status')
    } catch { Write-Diag "Get-MpComputerStatus failed: $($_.Exception.Message)" }

    try {
        $p = Get-MpPreference -ErrorAction Stop
        Write-Json (Select-Props $p @('DisableRealtimeMonitoring', 'DisableBehaviorMonitoring', 'DisableIOAVProtection',
            'DisableScriptScanning', 'DisableArchiveScanning', 'DisableBlockAtFirstSeen', 'DisableIntrusionPreventionSystem',
            'MAPSReporting', 'SubmitSamplesConsent', 'CloudBlockLevel', 'PUAProtection', 'EnableNetworkProtection',
            'EnableControlledFolderAccess', 'AttackSurfaceReductionRules_Ids', 'AttackSurfaceReductionRules_Actions',
            'SignatureUpdateInterval') 'preference')
        $kinds = [ordered]@{ ExclusionPath = 'path'; ExclusionProcess = 'process'; ExclusionExtension = 'extension'; ExclusionIpAddress = 'ip_address' }
        foreach ($k in $kinds.Keys) {
            $prop = $p.PSObject.Properties[$k]
            if ($null -eq $prop) { continue }
            foreach ($v in @($prop.Value)) {
                if ($null -eq $v -or [string]$v -eq '') { continue }
                Write-Json ([ordered]@{ section = 'exclusion'; kind = $kinds[$k]; value = [string]$v })
            }
        }
    } catch { Write-Diag "Get-MpPreference failed: $($_.Exception.Message)" }

    try {
        foreach ($d in @(Get-MpThreatDetection -ErrorAction Stop)) {
            if ($d.InitialDetectionTime -and $d.InitialDetectionTime -lt $since) { continue }
            Write-Json (Select-Props $d @('ThreatID', 'InitialDetectionTime', 'LastThreatStatusChangeTime', 'ProcessName',
                'DomainUser', 'Resources', 'ActionSuccess', 'ThreatStatusID', 'DetectionSourceTypeID', 'RemediationTime') 'detection')
        }
    } catch { Write-Diag "Get-MpThreatDetection failed: $($_.Exception.Message)" }
} else {
    Write-Diag 'Defender cmdlets not available (Defender removed, disabled by another product, or Server Core without the feature)'
}

try {
    $events = @(Get-WinEvent -FilterHashtable @{ LogName = 'Microsoft-Windows-Windows Defender/Operational'; Id = 1116, 1117, 5001, 5007, 5010, 5012, 5013; StartTime = $since } -MaxEvents 500 -ErrorAction Stop)
    foreach ($e in $events) {
        $msg = [string]$e.Message
        if ($msg.Length -gt 2000) { $msg = $msg.Substring(0, 2000) + '...' }
        Write-Json ([ordered]@{ section = 'event'; id = [int]$e.Id; time = (Format-Time $e.TimeCreated); message = $msg })
    }
} catch {
    if ($_.Exception.Message -notmatch 'No events were found') { Write-Diag "cannot read the Defender operational log: $($_.Exception.Message)" }
}

foreach ($av in @(Get-CimInstance -Namespace 'root\SecurityCenter2' -ClassName AntiVirusProduct -ErrorAction SilentlyContinue)) {
    Write-Json ([ordered]@{ section = 'av_product'; name = [string]$av.displayName; product_state = ('0x{0:x6}' -f [int]$av.productState)
        path = [string]$av.pathToSignedProductExe; timestamp = [string]$av.timestamp })
}
exit 0
