; Inno Setup script for spdesk on Windows (build the one-folder app first: installer\build.sh
; from a Git Bash or the same PyInstaller command in PowerShell, then compile this with ISCC).
; It installs per user (no admin rights), adds a Start menu entry for the windowed executable and
; leaves models, settings and the user's photos in place on uninstall.
#define AppVersion "0.1.0"
; Flavour: "cpu" or "cuda", which torch was frozen in (SPDESK_FLAVOUR); unset means the CPU build,
; as installer/README.md says, so that the setup file is never named spdesk-0.1.0-windows--setup.
#define Flavour GetEnv("SPDESK_FLAVOUR")
#if Flavour == ""
  #undef Flavour
  #define Flavour "cpu"
#endif
#if Flavour != "cpu" && Flavour != "cuda"
  #error SPDESK_FLAVOUR must be cpu or cuda: the torch frozen into dist\spdesk
#endif

[Setup]
AppId={{7B0A8F1C-3D2E-4F5A-9B6C-5D3E5C000001}
AppName=spdesk
AppVersion={#AppVersion}
AppPublisher=spdesk developers
DefaultDirName={localappdata}\Programs\spdesk
DefaultGroupName=spdesk
PrivilegesRequired=lowest
OutputDir=..\..\dist
OutputBaseFilename=spdesk-{#AppVersion}-windows-{#Flavour}-setup
SetupIconFile=..\..\resources\icons\spdesk.ico
Compression=lzma2/ultra64
SolidCompression=yes
ArchitecturesInstallIn64BitMode=x64compatible
WizardStyle=modern

[Files]
Source: "..\..\dist\spdesk\*"; DestDir: "{app}"; Flags: recursesubdirs ignoreversion

[Icons]
Name: "{group}\spdesk"; Filename: "{app}\spdesk-gui.exe"
Name: "{userdesktop}\spdesk"; Filename: "{app}\spdesk-gui.exe"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked

[Run]
Filename: "{app}\spdesk-gui.exe"; Description: "Start spdesk"; Flags: nowait postinstall skipifsilent
