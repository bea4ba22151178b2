# Signs Windows files with Authenticode and an RFC 3161 timestamp, for the release workflow.
#
#   pwsh scripts/windows-sign.ps1 FILE...
#
# Environment (from the repository's secrets):
#   WINDOWS_CERTIFICATE           the code-signing .pfx (certificate and private key), base64-encoded
#   WINDOWS_CERTIFICATE_PASSWORD  the .pfx password
#   WINDOWS_TIMESTAMP_URL         optional RFC 3161 timestamp server (default: DigiCert's)
#
# The timestamp keeps signatures valid after the certificate expires. The .pfx is written to
# $env:RUNNER_TEMP only for the duration of the signing and deleted afterwards.
$ErrorActionPreference = 'Stop'

if ($args.Count -eq 0) { throw 'usage: windows-sign.ps1 FILE...' }
if (-not $env:WINDOWS_CERTIFICATE) { throw 'secret WINDOWS_CERTIFICATE is empty' }
$timestampUrl = if ($env:WINDOWS_TIMESTAMP_URL) { $env:WINDOWS_TIMESTAMP_URL } else { 'http://timestamp.digicert.com' }

# signtool ships with the Windows SDK; take the newest x64 one.
$signtool = Get-ChildItem "${env:ProgramFiles(x86)}\Windows Kits\10\bin\*\x64\signtool.exe" |
    Sort-Object { [version]$_.Directory.Parent.Name } -Descending |
    Select-Object -First 1
if (-not $signtool) { throw 'signtool.exe not found: install the Windows 10/11 SDK' }

$pfx = Join-Path $env:RUNNER_TEMP "codesign-$([guid]::NewGuid()).pfx"
try {
    [IO.File]::WriteAllBytes($pfx, [Convert]::FromBase64String($env:WINDOWS_CERTIFICATE))
    foreach ($file in $args) {
        & $signtool.FullName sign /fd SHA256 /f $pfx /p $env:WINDOWS_CERTIFICATE_PASSWORD `
            /tr $timestampUrl /td SHA256 /d 'Personal AI Agent' $file
        if ($LASTEXITCODE -ne 0) { throw "signtool sign failed for $file (exit $LASTEXITCODE)" }
        & $signtool.FullName verify /pa /tw $file
        if ($LASTEXITCODE -ne 0) { throw "signtool verify failed for $file (exit $LASTEXITCODE)" }
    }
}
finally {
    Remove-Item -Force -ErrorAction SilentlyContinue $pfx
}
Write-Output "signed $($args.Count) files"
