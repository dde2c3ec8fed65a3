# Installs the unsigned panel for development on Windows: links cep-panel\ into the per-user CEP
# extensions folder with a directory junction (no administrator rights needed), or copies it with
# -Copy, and turns on PlayerDebugMode for CSXS 11 and 12 so Premiere Pro loads it unsigned.
#
#   powershell -ExecutionPolicy Bypass -File scripts\install_panel_dev.ps1 [-Copy] [-Uninstall]
param([switch]$Copy, [switch]$Uninstall)
$ErrorActionPreference = 'Stop'

$Root = Split-Path -Parent $PSScriptRoot
$Src = Join-Path $Root 'cep-panel'
$Id = 'com.sfxstudio.panel'
$ExtDir = if ($env:CEP_EXTENSIONS_DIR) { $env:CEP_EXTENSIONS_DIR } else { Join-Path $env:APPDATA 'Adobe\CEP\extensions' }
$Dest = Join-Path $ExtDir $Id
$Contents = @('CSXS', 'index.html', 'core', 'ui', 'cep', 'icons', '.debug')

if ("$Dest$Src".Contains('#')) { throw "CEP cannot load an extension from a path containing '#': $Dest" }

# Only ever remove what this script put there: our junction, or a folder holding our manifest.
if (Test-Path -LiteralPath $Dest) {
    $item = Get-Item -LiteralPath $Dest -Force
    if ($item.Attributes -band [IO.FileAttributes]::ReparsePoint) {
        # rmdir without /s removes the junction itself, never the files it points to.
        cmd /c rmdir "$Dest" | Out-Null
    } else {
        $manifest = Join-Path $Dest 'CSXS\manifest.xml'
        if (-not ((Test-Path -LiteralPath $manifest) -and (Select-String -LiteralPath $manifest -SimpleMatch "ExtensionBundleId=`"$Id`"" -Quiet))) {
            throw "$Dest exists and is not this panel; remove it yourself"
        }
        Remove-Item -LiteralPath $Dest -Recurse -Force
    }
}
if ($Uninstall) { Write-Host "Removed $Dest"; exit 0 }

New-Item -ItemType Directory -Force -Path $ExtDir | Out-Null
if ($Copy) {
    New-Item -ItemType Directory -Path $Dest | Out-Null
    foreach ($name in $Contents) { Copy-Item -LiteralPath (Join-Path $Src $name) -Destination $Dest -Recurse }
    Write-Host "Installed the panel (copy) at $Dest"
} else {
    New-Item -ItemType Junction -Path $Dest -Target $Src | Out-Null
    Write-Host "Installed the panel (junction) at $Dest"
}

foreach ($version in '11', '12') {
    $key = "HKCU:\Software\Adobe\CSXS.$version"
    # New-Item -Force would recreate an existing key and drop its other values.
    if (-not (Test-Path $key)) { New-Item -Path $key | Out-Null }
    Set-ItemProperty -Path $key -Name 'PlayerDebugMode' -Value '1' -Type String
}
Write-Host 'PlayerDebugMode is on for CSXS 11 and 12. Restart Premiere Pro, then open Window > Extensions > SFX Studio.'
Write-Host 'DevTools: http://localhost:8088 while the panel is open (cep-panel\.debug).'
