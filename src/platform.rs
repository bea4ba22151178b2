//! Which machine we run on, and which of a release's files is the one to install on it.
//!
//! A [`Platform`] is an operating system and a CPU architecture, written `<os>-<arch>` (`linux-x86_64`,
//! `macos-aarch64`, `windows-x86_64`); [`Platform::current`] is the machine the launcher was built for, and
//! `--platform` parses another one, accepting the usual aliases (`darwin-arm64`, `win-x64`, `osx-amd64`,
//! `linux/amd64`, or a Rust target triple such as `aarch64-apple-darwin`).
//!
//! [`choose_asset`] picks the installable file for a platform from the asset **names** alone, because that
//! is all a GitHub release or a feed reliably tells us. It works in three steps:
//!
//! 1. **Drop what is not an installable file**: checksums, signatures, certificates, SBOMs and manifests
//!    ([`is_auxiliary_asset`]), and anything [`archive_kind`] does not recognise (scripts, `.nupkg`, `.7z`).
//! 2. **Classify each word of the name** (`classify`). The name, without its archive suffix, is cut into
//!    words on every character that is not a letter or digit (`x86_64`, `x86-64` and `32-bit` are
//!    joined first), so `win` is never found inside `darwin` nor `arm` inside `arm64`. Each word names an
//!    OS (`linux`, `darwin`/`macos`/`osx`/`mac`/`apple`, `windows`/`win`/`mingw`, and `win64`, `win32`,
//!    `linux64` which also imply an architecture), an OS we do not build for (`freebsd`, `android`...),
//!    an architecture (`x86_64`/`amd64`/`x64`, `aarch64`/`arm64`, `i686`/`i386`/`386`/`x86`/`ia32`,
//!    `armv7`/`armhf`), one we do not build for (`arm` and `armv6` are ARMv6, `s390x`, `riscv64`...),
//!    `universal`/`universal2` (macOS fat binaries), a C library (`gnu`, `musl`, `msvc` and their `eabihf`
//!    forms), a neutral triple word (`unknown`, `pc`), a version number, or something else (the product
//!    name, a flavour such as `rocm` or `full`, `setup`, `portable`). The file type counts as an OS word
//!    too: `.exe`/`.msi` mean Windows, `.dmg`/`.pkg` and a `*.app.tar.gz` bundle mean macOS,
//!    `.AppImage`/`.deb`/`.rpm` mean Linux.
//! 3. **Keep only files that fit, then score them.** A file fits when it names exactly one OS, ours, and no
//!    OS we do not build for; names no architecture other than ours; and names our architecture, or is
//!    `universal` for macOS, or names none at all. A file naming no architecture is only taken on macOS
//!    (such builds are almost always universal) or for x86_64 (the historical default elsewhere), so an
//!    arm64 Linux machine is never handed an x86_64 binary that forgot to say so. Among the files that
//!    fit, the highest score wins; ties go to the shorter name, then to the first listed.
//!
//! | what | points |
//! |---|---|
//! | our own naming `PersonalAIAgent-<os>-<arch>-<version>.<ext>` (or `-macos-universal-`) | +1000 |
//! | names our architecture / is a macOS universal build / names no architecture | +300 / +200 / +100 |
//! | archive kind on Linux and macOS: `.tar.zst` 60 (what `release pack` writes, read in one fast pass), `.tar.gz` 58, `.tar.xz` 55, `.tar.bz2` 45, `.zip` 40, `.AppImage`/`.dmg` 20, `.pkg`/`.deb` 10, `.rpm` 5, bare binary 0 | 0–60 |
//! | archive kind on Windows: `.zip` 60, `.tar.gz` 40, `.tar.xz` 35, `.tar.zst` 30, `.tar.bz2` 25, `.msi` 20, `.exe` 15, bare 0 | 0–60 |
//! | the platform's usual C library: `gnu` on Linux (over `musl`), `msvc` on Windows (over `gnu`) | +5 |
//! | each word that is none of the above (a flavour like `rocm`, `jetpack5`, `full`, `setup`), at most 10 | −3 |
//!
//! The gaps are chosen so that each row only decides among files equal on the rows above it: our naming
//! beats anything, an exact architecture beats a universal build, an archive beats an installer, and the
//! C library and stray words only break near-ties (a musl `.tar.gz` still beats a gnu `.deb`).
//! When nothing fits, [`choose_asset`] returns `None` and [`require_asset`] says which files were published.

use std::cmp::Reverse;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::release::{Asset, Release};

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
compile_error!(
    "personal-ai-agent is built for Linux, macOS and Windows only; there are no backend builds for this OS"
);

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "x86",
    target_arch = "arm"
)))]
compile_error!("personal-ai-agent is built for x86_64, aarch64, x86 and armv7 only");

/// An operating system we publish builds for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Macos,
    Windows,
}

impl Os {
    pub const ALL: [Os; 3] = [Os::Linux, Os::Macos, Os::Windows];

    /// The OS this binary was built for.
    pub const fn current() -> Os {
        if cfg!(target_os = "macos") {
            Os::Macos
        } else if cfg!(target_os = "windows") {
            Os::Windows
        } else {
            Os::Linux
        }
    }

    /// The canonical spelling: `linux`, `macos`, `windows`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Macos => "macos",
            Os::Windows => "windows",
        }
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CPU architecture we publish builds for. `Armv7` is 32-bit ARM with hardware floating point (Debian's
/// `armhf`); older ARMv6 builds (`arm`, `armv6`) are a different architecture to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    X86_64,
    Aarch64,
    X86,
    Armv7,
}

impl Arch {
    pub const ALL: [Arch; 4] = [Arch::X86_64, Arch::Aarch64, Arch::X86, Arch::Armv7];

    /// The architecture this binary was built for (32-bit ARM builds are taken to be ARMv7).
    pub const fn current() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else if cfg!(target_arch = "x86") {
            Arch::X86
        } else if cfg!(target_arch = "arm") {
            Arch::Armv7
        } else {
            Arch::X86_64
        }
    }

    /// The canonical spelling: `x86_64`, `aarch64`, `x86`, `armv7`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::X86 => "x86",
            Arch::Armv7 => "armv7",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operating system and architecture, shown and serialized as `<os>-<arch>` (`linux-x86_64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: Os,
    pub arch: Arch,
}

impl Platform {
    /// Every platform that exists: each OS on each architecture, except macOS, which runs only on x86_64
    /// and aarch64.
    pub const SUPPORTED: [Platform; 10] = [
        Platform::new(Os::Linux, Arch::X86_64),
        Platform::new(Os::Linux, Arch::Aarch64),
        Platform::new(Os::Linux, Arch::X86),
        Platform::new(Os::Linux, Arch::Armv7),
        Platform::new(Os::Macos, Arch::X86_64),
        Platform::new(Os::Macos, Arch::Aarch64),
        Platform::new(Os::Windows, Arch::X86_64),
        Platform::new(Os::Windows, Arch::Aarch64),
        Platform::new(Os::Windows, Arch::X86),
        Platform::new(Os::Windows, Arch::Armv7),
    ];

    pub const fn new(os: Os, arch: Arch) -> Platform {
        Platform { os, arch }
    }

    /// The platform this binary was built for.
    pub const fn current() -> Platform {
        Platform::new(Os::current(), Arch::current())
    }

    /// Whether the combination exists: macOS runs on x86_64 and aarch64 only.
    pub const fn is_supported(&self) -> bool {
        !matches!((self.os, self.arch), (Os::Macos, Arch::X86 | Arch::Armv7))
    }

    /// The Rust target triple that builds for this platform, for example `x86_64-unknown-linux-gnu`.
    /// Platforms that do not exist (see [`Platform::is_supported`]; they cannot be parsed) get the
    /// nearest historical triple.
    pub const fn rust_target(&self) -> &'static str {
        match (self.os, self.arch) {
            (Os::Linux, Arch::X86_64) => "x86_64-unknown-linux-gnu",
            (Os::Linux, Arch::Aarch64) => "aarch64-unknown-linux-gnu",
            (Os::Linux, Arch::X86) => "i686-unknown-linux-gnu",
            (Os::Linux, Arch::Armv7) => "armv7-unknown-linux-gnueabihf",
            (Os::Macos, Arch::X86_64) => "x86_64-apple-darwin",
            (Os::Macos, Arch::Aarch64) => "aarch64-apple-darwin",
            (Os::Macos, Arch::X86) => "i686-apple-darwin",
            (Os::Macos, Arch::Armv7) => "armv7-apple-ios",
            (Os::Windows, Arch::X86_64) => "x86_64-pc-windows-msvc",
            (Os::Windows, Arch::Aarch64) => "aarch64-pc-windows-msvc",
            (Os::Windows, Arch::X86) => "i686-pc-windows-msvc",
            (Os::Windows, Arch::Armv7) => "thumbv7a-pc-windows-msvc",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.os, self.arch)
    }
}

impl FromStr for Platform {
    type Err = Error;

    /// Parses `<os>-<arch>` in any of the usual spellings, in either order, with `-`, `_` or `/` between
    /// (`linux-aarch64`, `darwin-arm64`, `win-x64`, `linux/amd64`), or a Rust target triple. Words of
    /// triples (`unknown`, `pc`, `gnu`, `msvc`) are accepted; anything else, a second OS or architecture,
    /// `universal`, or a platform that does not exist is refused.
    fn from_str(value: &str) -> Result<Self> {
        let invalid = || Error::InvalidPlatform {
            value: value.to_owned(),
        };
        let mut os = None;
        let mut arch = None;
        let mut implied_arch = None;
        for word in words(value) {
            match classify(&word) {
                Word::Os(named) => set_once(&mut os, named).ok_or_else(invalid)?,
                Word::OsWithArch(named, its_arch) => {
                    set_once(&mut os, named).ok_or_else(invalid)?;
                    implied_arch = Some(its_arch);
                }
                Word::Arch(named) => set_once(&mut arch, named).ok_or_else(invalid)?,
                Word::Libc(_) | Word::Vendor => {}
                Word::OtherOs | Word::OtherArch | Word::Universal | Word::Version | Word::Other => {
                    return Err(invalid());
                }
            }
        }
        let platform = Platform::new(
            os.ok_or_else(invalid)?,
            arch.or(implied_arch).ok_or_else(invalid)?,
        );
        if platform.is_supported() {
            Ok(platform)
        } else {
            Err(invalid())
        }
    }
}

/// Stores `value` unless a different one is already there; `None` means a conflict.
fn set_once<T: PartialEq + Copy>(slot: &mut Option<T>, value: T) -> Option<()> {
    match *slot {
        Some(existing) if existing != value => None,
        _ => {
            *slot = Some(value);
            Some(())
        }
    }
}

impl Serialize for Platform {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What kind of file an asset is, read from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveKind {
    /// `.tar.gz`, `.tgz`
    TarGz,
    /// `.tar.xz`, `.txz`
    TarXz,
    /// `.tar.zst`, `.tzst`
    TarZst,
    /// `.tar.bz2`, `.tbz2`, `.tbz`
    TarBz2,
    /// `.zip`
    Zip,
    /// A Windows Installer package.
    Msi,
    /// A Windows executable: an installer (`*-setup.exe`) or the program itself.
    Exe,
    /// A macOS disk image.
    Dmg,
    /// A macOS installer package.
    Pkg,
    /// A self-contained Linux executable.
    AppImage,
    /// A Debian package.
    Deb,
    /// An RPM package.
    Rpm,
    /// A file with no extension, usually a lone executable (`cosign-linux-amd64`, `ttyd.x86_64`).
    Bare,
}

impl ArchiveKind {
    /// The OS a file of this kind can only be for, if any.
    pub const fn implied_os(self) -> Option<Os> {
        match self {
            ArchiveKind::Msi | ArchiveKind::Exe => Some(Os::Windows),
            ArchiveKind::Dmg | ArchiveKind::Pkg => Some(Os::Macos),
            ArchiveKind::AppImage | ArchiveKind::Deb | ArchiveKind::Rpm => Some(Os::Linux),
            _ => None,
        }
    }

    /// Whether the file is an archive we unpack ourselves (rather than an installer or a lone binary).
    pub const fn is_archive(self) -> bool {
        matches!(
            self,
            ArchiveKind::TarGz
                | ArchiveKind::TarXz
                | ArchiveKind::TarZst
                | ArchiveKind::TarBz2
                | ArchiveKind::Zip
        )
    }
}

/// Suffixes of installable files, longest first where one ends another.
const KIND_SUFFIXES: &[(&str, ArchiveKind)] = &[
    (".tar.gz", ArchiveKind::TarGz),
    (".tgz", ArchiveKind::TarGz),
    (".tar.xz", ArchiveKind::TarXz),
    (".txz", ArchiveKind::TarXz),
    (".tar.zst", ArchiveKind::TarZst),
    (".tzst", ArchiveKind::TarZst),
    (".tar.bz2", ArchiveKind::TarBz2),
    (".tbz2", ArchiveKind::TarBz2),
    (".tbz", ArchiveKind::TarBz2),
    (".zip", ArchiveKind::Zip),
    (".msi", ArchiveKind::Msi),
    (".exe", ArchiveKind::Exe),
    (".dmg", ArchiveKind::Dmg),
    (".pkg", ArchiveKind::Pkg),
    (".appimage", ArchiveKind::AppImage),
    (".deb", ArchiveKind::Deb),
    (".rpm", ArchiveKind::Rpm),
];

/// The kind of an installable file, from its name; `None` for auxiliary files ([`is_auxiliary_asset`]) and
/// for extensions we cannot install (`.nupkg`, `.7z`, `.sh`, `.whl`, `.desktop`...).
pub fn archive_kind(name: &str) -> Option<ArchiveKind> {
    if is_auxiliary_asset(name) {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    if let Some(&(_, kind)) = KIND_SUFFIXES.iter().find(|(suffix, _)| lower.ends_with(suffix)) {
        return Some(kind);
    }
    looks_bare(&lower).then_some(ArchiveKind::Bare)
}

/// Whether a name without a known suffix is a lone executable: it has no extension at all, or what follows
/// its last dot is not an extension but part of the name (`3-linux-amd64`, `x86_64`, `aarch64`, `1`).
fn looks_bare(lower: &str) -> bool {
    let Some((_, after_dot)) = lower.rsplit_once('.') else {
        return true;
    };
    let is_extension = !after_dot.is_empty()
        && after_dot.bytes().all(|b| b.is_ascii_alphanumeric())
        && !after_dot.bytes().all(|b| b.is_ascii_digit());
    !is_extension
        || matches!(
            classify(after_dot),
            Word::Arch(_)
                | Word::OtherArch
                | Word::Os(_)
                | Word::OsWithArch(..)
                | Word::OtherOs
                | Word::Version
        )
}

/// Suffixes of files that accompany a build rather than being one.
const AUXILIARY_SUFFIXES: &[&str] = &[
    // deltas and file lists (`release pack`): never installed on their own
    ".delta",
    ".files.json",
    // checksums
    ".sha256",
    ".sha256sum",
    ".sha512",
    ".sha512sum",
    ".sha1",
    ".md5",
    ".b3",
    ".sum",
    ".txt",
    // signatures, certificates, keys, attestations
    ".sig",
    ".asc",
    ".gpg",
    ".minisig",
    ".pem",
    ".crt",
    ".cert",
    ".pub",
    ".sigstore",
    ".bundle",
    ".intoto.jsonl",
    ".jsonl",
    // SBOMs, manifests and updater metadata
    ".sbom",
    ".spdx",
    ".cdx.xml",
    ".json",
    ".yml",
    ".yaml",
    ".zsync",
    ".blockmap",
];

/// Whole names (lowercased) of checksum lists and update feeds published without an extension.
const AUXILIARY_NAMES: &[&str] = &[
    "sha256sums",
    "sha512sums",
    "sha1sums",
    "md5sums",
    "b3sums",
    "checksums",
    "releases",
];

/// Whether an asset is a checksum list (`checksums-linux-x86_64.txt`, `SHA256SUMS`, `*.sha256`), a
/// signature or certificate (`*.sig`, `*.asc`, `*.minisig`, `*.pem`), an SBOM or attestation (`*.sbom`,
/// `*.intoto.jsonl`), a manifest or updater feed (`release-manifest.json`, any `*.json`, `latest.yml`,
/// `RELEASES`) or a delta helper (`*.zsync`, `*.blockmap`): a file that accompanies a build rather than
/// being one.
pub fn is_auxiliary_asset(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    AUXILIARY_SUFFIXES.iter().any(|suffix| lower.ends_with(suffix))
        || AUXILIARY_NAMES.contains(&lower.as_str())
}

/// A C library (or Windows toolchain) named in a target triple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Libc {
    Gnu,
    Musl,
    Msvc,
}

/// What one word of an asset name says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Word {
    /// An OS we build for.
    Os(Os),
    /// An OS together with the architecture its name implies (`win64`, `win32`, `linux64`), used only when
    /// no architecture is named outright (`win32-x64` is 64-bit).
    OsWithArch(Os, Arch),
    /// An OS we do not build for.
    OtherOs,
    /// An architecture we build for.
    Arch(Arch),
    /// An architecture we do not build for (ARMv6 `arm`, `s390x`, `riscv64`...).
    OtherArch,
    /// A macOS universal binary (x86_64 and aarch64 in one).
    Universal,
    Libc(Libc),
    /// A neutral word of a target triple (`unknown`, `pc`).
    Vendor,
    /// A number, or `v` and a number.
    Version,
    /// Anything else: the product name, a flavour (`rocm`, `full`), `setup`, `portable`...
    Other,
}

/// Classifies one lowercased word of an asset name (see the module documentation).
fn classify(word: &str) -> Word {
    match word {
        "linux" => Word::Os(Os::Linux),
        "linux64" => Word::OsWithArch(Os::Linux, Arch::X86_64),
        "linux32" => Word::OsWithArch(Os::Linux, Arch::X86),
        "darwin" | "macos" | "macosx" | "osx" | "mac" | "apple" => Word::Os(Os::Macos),
        "windows" | "win" | "mingw" | "mingw32" | "mingw64" => Word::Os(Os::Windows),
        "win64" => Word::OsWithArch(Os::Windows, Arch::X86_64),
        "win32" => Word::OsWithArch(Os::Windows, Arch::X86),
        "freebsd" | "netbsd" | "openbsd" | "dragonfly" | "dragonflybsd" | "illumos" | "solaris" | "sunos"
        | "android" | "ios" | "aix" | "haiku" | "wasi" | "emscripten" | "redox" | "fuchsia" | "plan9" => {
            Word::OtherOs
        }
        // `x86_64` and `x86-64` arrive here as `x64` (see `words`).
        "x64" | "amd64" => Word::Arch(Arch::X86_64),
        "aarch64" | "arm64" | "armv8" | "arm64v8" => Word::Arch(Arch::Aarch64),
        "x86" | "i386" | "i486" | "i586" | "i686" | "386" | "ia32" | "32bit" => Word::Arch(Arch::X86),
        "armv7" | "armv7l" | "armv7a" | "armv7hl" | "armv7hf" | "armhf" | "arm7" => Word::Arch(Arch::Armv7),
        "arm" | "armv6" | "armv6l" | "armv6hf" | "armv5" | "armv5te" | "armv4t" | "armel" | "ppc"
        | "ppc64" | "ppc64le" | "ppc64el" | "powerpc" | "powerpc64" | "powerpc64le" | "s390x" | "riscv64"
        | "riscv64gc" | "mips" | "mipsle" | "mipsel" | "mips64" | "mips64le" | "mips64el" | "loong64"
        | "loongarch64" | "sparc64" | "wasm32" | "wasm64" => Word::OtherArch,
        "universal" | "universal2" => Word::Universal,
        "gnu" | "glibc" | "gnueabi" | "gnueabihf" => Word::Libc(Libc::Gnu),
        "musl" | "musleabi" | "musleabihf" => Word::Libc(Libc::Musl),
        "msvc" => Word::Libc(Libc::Msvc),
        "unknown" | "pc" => Word::Vendor,
        _ if is_version_word(word) => Word::Version,
        _ => Word::Other,
    }
}

fn is_version_word(word: &str) -> bool {
    let digits = word.strip_prefix('v').unwrap_or(word);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Cuts a name into lowercased words on every character that is not a letter or digit, after joining the
/// spellings that contain a separator (`x86_64`, `x86-64` become `x64`; `32-bit` becomes `32bit`).
fn words(name: &str) -> Vec<String> {
    let joined = name
        .to_ascii_lowercase()
        .replace("x86_64", "x64")
        .replace("x86-64", "x64")
        .replace("32-bit", "32bit")
        .replace("64-bit", "64bit");
    joined
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

/// How an asset's architecture relates to the platform it might be installed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArchFit {
    /// The name says our architecture.
    Exact,
    /// A macOS universal build.
    Universal,
    /// The name says no architecture at all.
    Unnamed,
}

/// What an asset's name says about where it runs.
#[derive(Debug, Default)]
struct NameFacts {
    /// Each OS we build for that the name or its file type names.
    oses: Vec<Os>,
    names_other_os: bool,
    /// Each architecture we build for that the name names outright.
    arches: Vec<Arch>,
    names_other_arch: bool,
    /// The architecture implied by `win64`/`win32`/`linux64`.
    implied_arch: Option<Arch>,
    universal: bool,
    libc: Option<Libc>,
    /// Words that are none of the above and not version numbers.
    other_words: usize,
}

impl NameFacts {
    fn read(name: &str, kind: ArchiveKind) -> NameFacts {
        let lower = name.to_ascii_lowercase();
        let stem = KIND_SUFFIXES
            .iter()
            .find_map(|(suffix, _)| lower.strip_suffix(suffix))
            .unwrap_or(&lower);
        let mut facts = NameFacts::default();
        facts.oses.extend(kind.implied_os());
        // A `Name.app.tar.gz` (Tauri's macOS updater archive) is a zipped-up macOS application bundle.
        if stem.ends_with(".app") {
            facts.oses.push(Os::Macos);
        }
        for word in words(stem) {
            match classify(&word) {
                Word::Os(os) => facts.oses.push(os),
                Word::OsWithArch(os, arch) => {
                    facts.oses.push(os);
                    facts.implied_arch = Some(arch);
                }
                Word::OtherOs => facts.names_other_os = true,
                Word::Arch(arch) => facts.arches.push(arch),
                Word::OtherArch => facts.names_other_arch = true,
                Word::Universal => facts.universal = true,
                Word::Libc(libc) => facts.libc = Some(libc),
                Word::Vendor | Word::Version => {}
                Word::Other => facts.other_words += 1,
            }
        }
        facts
    }

    /// How the asset fits the platform, or `None` when it is for another OS or architecture, or when it
    /// does not say enough to be sure it is for this one.
    fn fit(&self, platform: &Platform) -> Option<ArchFit> {
        if self.names_other_os || self.names_other_arch {
            return None;
        }
        if self.oses.is_empty() || self.oses.iter().any(|&os| os != platform.os) {
            return None;
        }
        if self.arches.iter().any(|&arch| arch != platform.arch) {
            return None;
        }
        if !self.arches.is_empty() {
            return Some(ArchFit::Exact);
        }
        if let Some(implied) = self.implied_arch {
            return (implied == platform.arch).then_some(ArchFit::Exact);
        }
        if self.universal {
            return (platform.os == Os::Macos).then_some(ArchFit::Universal);
        }
        (platform.os == Os::Macos || platform.arch == Arch::X86_64).then_some(ArchFit::Unnamed)
    }
}

const OUR_NAMING_POINTS: i32 = 1000;
const MAX_PENALISED_WORDS: usize = 10;
const POINTS_PER_OTHER_WORD: i32 = 3;

/// The points of one asset for a platform (see the table in the module documentation), or `None` when it
/// must not be installed there.
fn score_asset(name: &str, platform: &Platform) -> Option<i32> {
    let kind = archive_kind(name)?;
    let facts = NameFacts::read(name, kind);
    let arch_points = match facts.fit(platform)? {
        ArchFit::Exact => 300,
        ArchFit::Universal => 200,
        ArchFit::Unnamed => 100,
    };
    let libc_points = match (platform.os, facts.libc) {
        (Os::Linux, Some(Libc::Gnu)) | (Os::Windows, Some(Libc::Msvc)) => 5,
        _ => 0,
    };
    let our_points = if is_our_naming(name, platform) {
        OUR_NAMING_POINTS
    } else {
        0
    };
    let penalised_words = facts.other_words.min(MAX_PENALISED_WORDS) as i32;
    Some(
        our_points + arch_points + kind_points(kind, platform.os) + libc_points
            - penalised_words * POINTS_PER_OTHER_WORD,
    )
}

/// How much the platform's users and our installer prefer this kind of file (0–60).
fn kind_points(kind: ArchiveKind, os: Os) -> i32 {
    use ArchiveKind::*;
    match (os, kind) {
        (Os::Windows, Zip) => 60,
        (Os::Windows, TarGz) => 40,
        (Os::Windows, TarXz) => 35,
        (Os::Windows, TarZst) => 30,
        (Os::Windows, TarBz2) => 25,
        (Os::Windows, Msi) => 20,
        (Os::Windows, Exe) => 15,
        (_, TarZst) => 60,
        (_, TarGz) => 58,
        (_, TarXz) => 55,
        (_, TarBz2) => 45,
        (_, Zip) => 40,
        (Os::Linux, AppImage) | (Os::Macos, Dmg) => 20,
        (Os::Linux, Deb) | (Os::Macos, Pkg) => 10,
        (Os::Linux, Rpm) => 5,
        // Bare binaries, and kinds for another OS (which never fit, as their kind names their OS).
        _ => 0,
    }
}

/// Whether the name follows our release layout for this platform: `PersonalAIAgent-<os>-<arch>-<version>`,
/// or `PersonalAIAgent-macos-universal-<version>` on macOS.
fn is_our_naming(name: &str, platform: &Platform) -> bool {
    let lower = name.to_ascii_lowercase();
    let exact = format!("personalaiagent-{}-{}-", platform.os, platform.arch);
    lower.starts_with(&exact)
        || (platform.os == Os::Macos && lower.starts_with("personalaiagent-macos-universal-"))
}

/// The installable file for `platform` among a release's assets, by name (see the module documentation);
/// `None` when no asset is for this platform. Never returns a file for another OS or architecture.
pub fn choose_asset<'a>(assets: &'a [Asset], platform: &Platform) -> Option<&'a Asset> {
    assets
        .iter()
        .enumerate()
        .filter_map(|(index, asset)| score_asset(&asset.name, platform).map(|points| (points, index, asset)))
        .max_by_key(|&(points, index, asset)| (points, Reverse(asset.name.len()), Reverse(index)))
        .map(|(_, _, asset)| asset)
}

/// Like [`choose_asset`], but when nothing fits, an [`Error::NoAssetForPlatform`] that lists what the
/// release does publish (its installable-looking files, without checksums and signatures).
pub fn require_asset<'a>(release: &'a Release, platform: &Platform) -> Result<&'a Asset> {
    choose_asset(&release.assets, platform).ok_or_else(|| Error::NoAssetForPlatform {
        version: release.version.to_string(),
        platform: platform.to_string(),
        available: release
            .assets
            .iter()
            .filter(|asset| !is_auxiliary_asset(&asset.name))
            .map(|asset| asset.name.clone())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(text: &str) -> Platform {
        text.parse().unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    fn assets(names: &[&str]) -> Vec<Asset> {
        names
            .iter()
            .map(|name| Asset {
                name: (*name).to_owned(),
                size: 1,
                url: format!("https://example.invalid/{name}"),
                api_url: None,
                digest: None,
            })
            .collect()
    }

    fn chosen(names: &[&str], target: &str) -> Option<String> {
        choose_asset(&assets(names), &platform(target)).map(|asset| asset.name.clone())
    }

    /// One asset list from `tests/fixtures/assets/`: a `#` comment naming the project and release, then one
    /// asset name per line.
    struct Fixture {
        file: &'static str,
        text: &'static str,
    }

    impl Fixture {
        fn names(&self) -> Vec<&'static str> {
            self.text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .collect()
        }

        fn assets(&self) -> Vec<Asset> {
            assets(&self.names())
        }
    }

    macro_rules! fixture {
        ($file:literal) => {
            Fixture {
                file: $file,
                text: include_str!(concat!("../tests/fixtures/assets/", $file)),
            }
        };
    }

    fn fixtures() -> Vec<Fixture> {
        vec![
            fixture!("ripgrep.txt"),
            fixture!("fd.txt"),
            fixture!("gh.txt"),
            fixture!("ollama.txt"),
            fixture!("neovim.txt"),
            fixture!("uv.txt"),
            fixture!("quota-float.txt"),
            fixture!("pdf-tile-generator.txt"),
            fixture!("cargo-binstall.txt"),
            fixture!("caddy.txt"),
            fixture!("personal-ai-agent.txt"),
        ]
    }

    /// Checks the choice for each listed platform, naming the fixture and platform on failure.
    fn assert_choices(fixture: Fixture, expected: &[(&str, Option<&str>)]) {
        let assets = fixture.assets();
        assert!(
            fixture.text.starts_with("# "),
            "{} must start with a comment naming its source",
            fixture.file
        );
        for &(target, want) in expected {
            let got = choose_asset(&assets, &platform(target)).map(|asset| asset.name.as_str());
            assert_eq!(got, want, "{} on {target}", fixture.file);
        }
    }

    #[test]
    fn os_arch_and_platform_display_in_canonical_spelling() {
        let shown: Vec<String> = Os::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["linux", "macos", "windows"]);
        let shown: Vec<String> = Arch::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["x86_64", "aarch64", "x86", "armv7"]);
        assert_eq!(Platform::new(Os::Linux, Arch::X86_64).to_string(), "linux-x86_64");
        assert_eq!(
            Platform::new(Os::Macos, Arch::Aarch64).to_string(),
            "macos-aarch64"
        );
    }

    #[test]
    fn every_supported_platform_parses_back_from_its_display() {
        for supported in Platform::SUPPORTED {
            assert_eq!(platform(&supported.to_string()), supported);
        }
    }

    #[test]
    fn platform_aliases_parse_to_the_canonical_platform() {
        let cases = [
            ("linux-aarch64", "linux-aarch64"),
            ("windows-x86_64", "windows-x86_64"),
            ("darwin-arm64", "macos-aarch64"),
            ("osx-amd64", "macos-x86_64"),
            ("macOS-x64", "macos-x86_64"),
            ("win-x64", "windows-x86_64"),
            ("win64", "windows-x86_64"),
            ("win32", "windows-x86"),
            ("windows-arm64", "windows-aarch64"),
            ("linux/amd64", "linux-x86_64"),
            ("linux_386", "linux-x86"),
            ("linux-armhf", "linux-armv7"),
            ("Linux-X86-64", "linux-x86_64"),
            ("amd64-linux", "linux-x86_64"),
            ("x86_64-unknown-linux-gnu", "linux-x86_64"),
            ("aarch64-unknown-linux-musl", "linux-aarch64"),
            ("armv7-unknown-linux-gnueabihf", "linux-armv7"),
            ("aarch64-apple-darwin", "macos-aarch64"),
            ("x86_64-pc-windows-msvc", "windows-x86_64"),
            ("i686-pc-windows-gnu", "windows-x86"),
        ];
        for (alias, canonical) in cases {
            assert_eq!(platform(alias).to_string(), canonical, "{alias}");
        }
    }

    #[test]
    fn strings_that_are_not_one_existing_platform_are_refused_with_the_value() {
        for bad in [
            "",
            "linux",
            "x86_64",
            "macos-universal",
            "linux-arm",
            "linux-armv6",
            "linux-riscv64",
            "freebsd-x86_64",
            "x86_64-linux-android",
            "linux-windows-x86_64",
            "linux-x86_64-aarch64",
            "macos-armv7",
            "macos-x86",
            "linux-x86_64-1.2",
            "plan-nine",
        ] {
            match bad.parse::<Platform>() {
                Err(Error::InvalidPlatform { value }) => assert_eq!(value, bad),
                other => panic!("{bad:?} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn platform_serializes_as_its_string_and_reads_back_aliases() {
        let value = serde_json::to_value(Platform::new(Os::Windows, Arch::Aarch64)).unwrap();
        assert_eq!(value, serde_json::json!("windows-aarch64"));
        let read: Platform = serde_json::from_value(serde_json::json!("darwin-arm64")).unwrap();
        assert_eq!(read, Platform::new(Os::Macos, Arch::Aarch64));
        assert!(serde_json::from_value::<Platform>(serde_json::json!("beos-m68k")).is_err());
    }

    #[test]
    fn rust_targets_are_the_usual_triples_and_parse_back() {
        assert_eq!(platform("linux-x86_64").rust_target(), "x86_64-unknown-linux-gnu");
        assert_eq!(
            platform("linux-armv7").rust_target(),
            "armv7-unknown-linux-gnueabihf"
        );
        assert_eq!(platform("macos-aarch64").rust_target(), "aarch64-apple-darwin");
        assert_eq!(platform("windows-x86_64").rust_target(), "x86_64-pc-windows-msvc");
        // Windows on ARMv7 builds as `thumbv7a-pc-windows-msvc`, which is no spelling a release asset uses.
        for supported in Platform::SUPPORTED
            .into_iter()
            .filter(|p| p.arch != Arch::Armv7 || p.os != Os::Windows)
        {
            assert_eq!(
                platform(supported.rust_target()),
                supported,
                "{}",
                supported.rust_target()
            );
        }
    }

    #[test]
    fn current_platform_is_the_one_this_test_binary_was_built_for() {
        let expected_os = if cfg!(target_os = "macos") {
            "macos"
        } else if cfg!(target_os = "windows") {
            "windows"
        } else {
            "linux"
        };
        assert_eq!(Platform::current().os.as_str(), expected_os);
        assert_eq!(
            Platform::current().arch.as_str() == "x86_64",
            cfg!(target_arch = "x86_64")
        );
        assert!(Platform::current().is_supported());
    }

    #[test]
    fn checksums_signatures_and_manifests_are_auxiliary() {
        for name in [
            "checksums-linux-x86_64.txt",
            "SHA256SUMS",
            "SHA256SUMS.asc",
            "B3SUMS",
            "sha256sum.txt",
            "sha256.sum",
            "uv-x86_64-apple-darwin.tar.gz.sha256",
            "pulumi-v3.133.0-linux-x64.tar.gz.sig",
            "release-manifest.json",
            "release-manifest.json.minisig",
            "dist-manifest.json",
            "latest.json",
            "latest-mac.yml",
            "caddy_2.9.0_linux_amd64.pem",
            "caddy_2.9.0_linux_amd64.sbom",
            "cosign-linux-amd64-keyless.pem",
            "multiple.intoto.jsonl",
            "minisign.pub",
            "nvim-linux-x86_64.appimage.zsync",
            "FreeCAD_1.1.1-Linux-x86_64-py311.AppImage-SHA256.txt",
            "foo.tar.gz.sha512",
            "foo.zip.md5",
            "RELEASES",
        ] {
            assert!(is_auxiliary_asset(name), "{name}");
            assert_eq!(archive_kind(name), None, "{name}");
        }
        for name in [
            "PersonalAIAgent-linux-x86_64-1.2.0.tar.gz",
            "nvim-win64.msi",
            "cosign-linux-amd64",
            "jq.exe",
        ] {
            assert!(!is_auxiliary_asset(name), "{name}");
        }
    }

    #[test]
    fn archive_kinds_are_read_from_the_suffix_case_insensitively() {
        use ArchiveKind::*;
        let cases = [
            ("a.tar.gz", Some(TarGz)),
            ("a.TGZ", Some(TarGz)),
            ("a.tar.xz", Some(TarXz)),
            ("ollama-linux-amd64.tar.zst", Some(TarZst)),
            ("a.tar.bz2", Some(TarBz2)),
            ("a.zip", Some(Zip)),
            ("a_x64_en-US.msi", Some(Msi)),
            ("a_x64-setup.exe", Some(Exe)),
            ("a_universal.dmg", Some(Dmg)),
            ("gh_2.52.0_macOS_universal.pkg", Some(Pkg)),
            ("FreeCAD-Linux-x86_64.AppImage", Some(AppImage)),
            ("a_amd64.deb", Some(Deb)),
            ("a.x86_64.rpm", Some(Rpm)),
            ("cosign-linux-amd64", Some(Bare)),
            ("ttyd.x86_64", Some(Bare)),
            ("ttyd.aarch64", Some(Bare)),
            ("tool-1.2.3-linux-amd64", Some(Bare)),
            ("uv-installer.sh", None),
            ("install.ps1", None),
            ("PdfTileGenerator-1.3.0-full.nupkg", None),
            ("FreeCAD_1.1.1-Windows-x86_64-py311.7z", None),
            ("bottom.desktop", None),
        ];
        for (name, kind) in cases {
            assert_eq!(archive_kind(name), kind, "{name}");
        }
        assert!(TarGz.is_archive() && Zip.is_archive() && !Msi.is_archive() && !Bare.is_archive());
        assert_eq!(Msi.implied_os(), Some(Os::Windows));
        assert_eq!(Dmg.implied_os(), Some(Os::Macos));
        assert_eq!(Deb.implied_os(), Some(Os::Linux));
        assert_eq!(TarGz.implied_os(), None);
    }

    #[test]
    fn words_are_split_on_separators_so_win_is_not_found_inside_darwin() {
        assert_eq!(chosen(&["tool-1.0-darwin-amd64.tar.gz"], "windows-x86_64"), None);
        assert_eq!(
            chosen(&["tool-1.0-darwin-amd64.tar.gz"], "macos-x86_64").as_deref(),
            Some("tool-1.0-darwin-amd64.tar.gz")
        );
        // `windows` contains neither `win` as a word nor `x64`; `twin` is a product name, not Windows.
        assert_eq!(chosen(&["twin-linux-amd64.tar.gz"], "windows-x86_64"), None);
        assert_eq!(
            chosen(&["twin-linux-amd64.tar.gz"], "linux-x86_64").as_deref(),
            Some("twin-linux-amd64.tar.gz")
        );
    }

    #[test]
    fn arm_is_not_arm64_and_arm64_is_not_armv7() {
        let names = ["tool-linux-arm.tar.gz", "tool-linux-armv6.tar.gz"];
        assert_eq!(chosen(&names, "linux-aarch64"), None);
        assert_eq!(chosen(&names, "linux-armv7"), None);
        assert_eq!(chosen(&["tool-linux-arm64.tar.gz"], "linux-armv7"), None);
        assert_eq!(chosen(&["tool-linux-armv7.tar.gz"], "linux-aarch64"), None);
        let both = [
            "tool-linux-arm.tar.gz",
            "tool-linux-arm64.tar.gz",
            "tool-linux-armv7.tar.gz",
        ];
        assert_eq!(
            chosen(&both, "linux-aarch64").as_deref(),
            Some("tool-linux-arm64.tar.gz")
        );
        assert_eq!(
            chosen(&both, "linux-armv7").as_deref(),
            Some("tool-linux-armv7.tar.gz")
        );
    }

    #[test]
    fn an_asset_for_an_architecture_we_do_not_build_for_is_never_chosen() {
        let names = [
            "tool-linux-arm.tar.gz",
            "tool-armv6-unknown-linux-gnueabihf.tar.gz",
            "tool-linux-s390x.tar.gz",
            "tool-riscv64gc-unknown-linux-gnu.tar.gz",
            "tool_ppc64le.deb",
            "tool-windows-armv5.zip",
        ];
        for target in Platform::SUPPORTED {
            assert_eq!(choose_asset(&assets(&names), &target), None, "{target}");
        }
    }

    #[test]
    fn x86_64_is_not_mistaken_for_32_bit_x86() {
        let names = ["tool-x86_64-unknown-linux-gnu.tar.gz", "tool-x86-64-linux.zip"];
        assert_eq!(chosen(&names, "linux-x86"), None);
        assert_eq!(
            chosen(&names, "linux-x86_64").as_deref(),
            Some("tool-x86_64-unknown-linux-gnu.tar.gz")
        );
        assert_eq!(
            chosen(&["tool-win32-x64.zip"], "windows-x86_64").as_deref(),
            Some("tool-win32-x64.zip")
        );
        assert_eq!(chosen(&["tool-win32-x64.zip"], "windows-x86"), None);
        assert_eq!(
            chosen(&["nvim-win32.zip", "nvim-win64.zip"], "windows-x86").as_deref(),
            Some("nvim-win32.zip")
        );
    }

    #[test]
    fn an_asset_naming_an_os_we_do_not_build_for_is_never_chosen() {
        let names = [
            "zoxide-0.9.8-aarch64-linux-android.tar.gz",
            "tool-x86_64-unknown-freebsd.tar.gz",
        ];
        for target in Platform::SUPPORTED {
            assert_eq!(choose_asset(&assets(&names), &target), None, "{target}");
        }
    }

    #[test]
    fn the_file_type_counts_as_the_os_and_must_agree_with_the_name() {
        assert_eq!(
            chosen(&["App_1.0_x64-setup.exe"], "windows-x86_64").as_deref(),
            Some("App_1.0_x64-setup.exe")
        );
        assert_eq!(chosen(&["App_1.0_x64-setup.exe"], "linux-x86_64"), None);
        assert_eq!(
            chosen(&["App_1.0_amd64.deb"], "linux-x86_64").as_deref(),
            Some("App_1.0_amd64.deb")
        );
        assert_eq!(chosen(&["App_1.0_amd64.deb"], "windows-x86_64"), None);
        assert_eq!(chosen(&["tool-linux-amd64.exe"], "windows-x86_64"), None);
        assert_eq!(chosen(&["tool-linux-amd64.exe"], "linux-x86_64"), None);
    }

    #[test]
    fn an_asset_without_an_architecture_is_taken_only_on_macos_or_x86_64() {
        let names = ["tool-linux.tar.gz", "tool-macos.tar.gz", "tool-windows.zip"];
        assert_eq!(
            chosen(&names, "linux-x86_64").as_deref(),
            Some("tool-linux.tar.gz")
        );
        assert_eq!(chosen(&names, "linux-aarch64"), None);
        assert_eq!(
            chosen(&names, "macos-aarch64").as_deref(),
            Some("tool-macos.tar.gz")
        );
        assert_eq!(
            chosen(&names, "windows-x86_64").as_deref(),
            Some("tool-windows.zip")
        );
        assert_eq!(chosen(&names, "windows-aarch64"), None);
    }

    #[test]
    fn an_exact_macos_build_beats_a_universal_one_and_universal_beats_none() {
        let names = [
            "tool-universal-apple-darwin.tar.gz",
            "tool-aarch64-apple-darwin.zip",
        ];
        assert_eq!(
            chosen(&names, "macos-aarch64").as_deref(),
            Some("tool-aarch64-apple-darwin.zip")
        );
        assert_eq!(
            chosen(&names, "macos-x86_64").as_deref(),
            Some("tool-universal-apple-darwin.tar.gz")
        );
        assert_eq!(chosen(&["tool-linux-universal.tar.gz"], "linux-x86_64"), None);
    }

    #[test]
    fn our_own_naming_wins_over_a_better_looking_archive() {
        let names = [
            "backend-x86_64-unknown-linux-gnu.tar.gz",
            "PersonalAIAgent-linux-x86_64-1.2.0.zip",
        ];
        assert_eq!(
            chosen(&names, "linux-x86_64").as_deref(),
            Some("PersonalAIAgent-linux-x86_64-1.2.0.zip")
        );
        // Our naming for another platform earns nothing and is still refused.
        assert_eq!(
            chosen(&["PersonalAIAgent-linux-aarch64-1.2.0.tar.gz"], "linux-x86_64"),
            None
        );
    }

    #[test]
    fn gnu_is_preferred_over_musl_only_mildly() {
        let names = [
            "t-x86_64-unknown-linux-musl.tar.gz",
            "t-x86_64-unknown-linux-gnu.tar.gz",
        ];
        assert_eq!(
            chosen(&names, "linux-x86_64").as_deref(),
            Some("t-x86_64-unknown-linux-gnu.tar.gz")
        );
        let names = ["t-x86_64-unknown-linux-musl.tar.gz", "t_1.0_amd64.deb"];
        assert_eq!(
            chosen(&names, "linux-x86_64").as_deref(),
            Some("t-x86_64-unknown-linux-musl.tar.gz")
        );
    }

    #[test]
    fn nothing_is_chosen_from_an_empty_list_or_from_checksums_alone() {
        assert_eq!(chosen(&[], "linux-x86_64"), None);
        let names = [
            "checksums.txt",
            "SHA256SUMS",
            "source.tar.gz",
            "release-manifest.json",
        ];
        for target in Platform::SUPPORTED {
            assert_eq!(choose_asset(&assets(&names), &target), None, "{target}");
        }
    }

    #[test]
    fn require_asset_names_the_platform_and_the_files_published() {
        let release = Release {
            version: semver::Version::new(1, 2, 0),
            tag: "v1.2.0".to_owned(),
            name: None,
            published_at: None,
            notes: String::new(),
            prerelease: false,
            html_url: None,
            assets: fixture!("personal-ai-agent.txt").assets(),
        };
        let found = require_asset(&release, &platform("linux-aarch64")).unwrap();
        assert_eq!(found.name, "PersonalAIAgent-linux-aarch64-1.2.0.tar.gz");
        match require_asset(&release, &platform("windows-aarch64")) {
            Err(Error::NoAssetForPlatform {
                version,
                platform,
                available,
            }) => {
                assert_eq!(version, "1.2.0");
                assert_eq!(platform, "windows-aarch64");
                assert_eq!(available.len(), 5, "{available:?}");
                assert!(
                    available.iter().all(|name| name.starts_with("PersonalAIAgent-")),
                    "{available:?}"
                );
            }
            other => panic!("expected NoAssetForPlatform, got {other:?}"),
        }
    }

    #[test]
    fn ripgrep_14_1_1() {
        assert_choices(
            fixture!("ripgrep.txt"),
            &[
                (
                    "linux-x86_64",
                    Some("ripgrep-14.1.1-x86_64-unknown-linux-musl.tar.gz"),
                ),
                (
                    "linux-aarch64",
                    Some("ripgrep-14.1.1-aarch64-unknown-linux-gnu.tar.gz"),
                ),
                (
                    "macos-aarch64",
                    Some("ripgrep-14.1.1-aarch64-apple-darwin.tar.gz"),
                ),
                ("macos-x86_64", Some("ripgrep-14.1.1-x86_64-apple-darwin.tar.gz")),
                (
                    "windows-x86_64",
                    Some("ripgrep-14.1.1-x86_64-pc-windows-msvc.zip"),
                ),
                ("windows-aarch64", None),
                ("windows-x86", Some("ripgrep-14.1.1-i686-pc-windows-msvc.zip")),
                ("linux-x86", Some("ripgrep-14.1.1-i686-unknown-linux-gnu.tar.gz")),
                (
                    "linux-armv7",
                    Some("ripgrep-14.1.1-armv7-unknown-linux-gnueabihf.tar.gz"),
                ),
            ],
        );
    }

    #[test]
    fn fd_10_2_0() {
        assert_choices(
            fixture!("fd.txt"),
            &[
                ("linux-x86_64", Some("fd-v10.2.0-x86_64-unknown-linux-gnu.tar.gz")),
                (
                    "linux-aarch64",
                    Some("fd-v10.2.0-aarch64-unknown-linux-gnu.tar.gz"),
                ),
                ("macos-aarch64", Some("fd-v10.2.0-aarch64-apple-darwin.tar.gz")),
                ("macos-x86_64", Some("fd-v10.2.0-x86_64-apple-darwin.tar.gz")),
                ("windows-x86_64", Some("fd-v10.2.0-x86_64-pc-windows-msvc.zip")),
                // Only ARMv6 (`arm-`) builds: not for an ARMv7 machine as far as names can tell.
                ("linux-armv7", None),
            ],
        );
    }

    #[test]
    fn gh_2_52_0() {
        assert_choices(
            fixture!("gh.txt"),
            &[
                ("linux-x86_64", Some("gh_2.52.0_linux_amd64.tar.gz")),
                ("linux-aarch64", Some("gh_2.52.0_linux_arm64.tar.gz")),
                ("macos-aarch64", Some("gh_2.52.0_macOS_arm64.zip")),
                ("macos-x86_64", Some("gh_2.52.0_macOS_amd64.zip")),
                ("windows-x86_64", Some("gh_2.52.0_windows_amd64.zip")),
                ("windows-aarch64", Some("gh_2.52.0_windows_arm64.zip")),
                ("windows-x86", Some("gh_2.52.0_windows_386.zip")),
                ("linux-armv7", None),
            ],
        );
    }

    #[test]
    fn ollama_picks_the_main_bundle_over_gpu_add_ons() {
        assert_choices(
            fixture!("ollama.txt"),
            &[
                ("linux-x86_64", Some("ollama-linux-amd64.tar.zst")),
                ("linux-aarch64", Some("ollama-linux-arm64.tar.zst")),
                ("macos-aarch64", Some("ollama-darwin.tar.zst")),
                ("macos-x86_64", Some("ollama-darwin.tar.zst")),
                ("windows-x86_64", Some("ollama-windows-amd64.zip")),
                ("windows-aarch64", Some("ollama-windows-arm64.zip")),
                ("linux-armv7", None),
            ],
        );
    }

    #[test]
    fn neovim_0_11() {
        assert_choices(
            fixture!("neovim.txt"),
            &[
                ("linux-x86_64", Some("nvim-linux-x86_64.tar.gz")),
                ("linux-aarch64", Some("nvim-linux-arm64.tar.gz")),
                ("macos-aarch64", Some("nvim-macos-arm64.tar.gz")),
                ("macos-x86_64", Some("nvim-macos-x86_64.tar.gz")),
                ("windows-x86_64", Some("nvim-win64.zip")),
                ("windows-aarch64", Some("nvim-win-arm64.zip")),
                ("windows-x86", None),
            ],
        );
    }

    #[test]
    fn uv_0_5_12() {
        assert_choices(
            fixture!("uv.txt"),
            &[
                ("linux-x86_64", Some("uv-x86_64-unknown-linux-gnu.tar.gz")),
                ("linux-aarch64", Some("uv-aarch64-unknown-linux-gnu.tar.gz")),
                ("macos-aarch64", Some("uv-aarch64-apple-darwin.tar.gz")),
                ("macos-x86_64", Some("uv-x86_64-apple-darwin.tar.gz")),
                ("windows-x86_64", Some("uv-x86_64-pc-windows-msvc.zip")),
                ("windows-aarch64", None),
                ("linux-armv7", Some("uv-armv7-unknown-linux-gnueabihf.tar.gz")),
            ],
        );
    }

    #[test]
    fn tauri_app_quota_float_0_3_4() {
        assert_choices(
            fixture!("quota-float.txt"),
            &[
                ("linux-x86_64", None),
                ("linux-aarch64", None),
                ("macos-aarch64", Some("Quota.Float_universal.app.tar.gz")),
                ("macos-x86_64", Some("Quota.Float_universal.app.tar.gz")),
                ("windows-x86_64", Some("Quota.Float_0.3.4_x64-setup.exe")),
                ("windows-aarch64", None),
            ],
        );
    }

    #[test]
    fn velopack_app_pdf_tile_generator_1_3_0() {
        assert_choices(
            fixture!("pdf-tile-generator.txt"),
            &[
                ("linux-x86_64", None),
                ("linux-aarch64", None),
                ("macos-aarch64", None),
                ("macos-x86_64", None),
                ("windows-x86_64", Some("PdfTileGenerator-win-Portable.zip")),
                ("windows-aarch64", None),
            ],
        );
    }

    #[test]
    fn cargo_binstall_prefers_exact_over_universal_and_plain_over_full() {
        assert_choices(
            fixture!("cargo-binstall.txt"),
            &[
                (
                    "linux-x86_64",
                    Some("cargo-binstall-x86_64-unknown-linux-gnu.tgz"),
                ),
                (
                    "linux-aarch64",
                    Some("cargo-binstall-aarch64-unknown-linux-gnu.tgz"),
                ),
                ("macos-aarch64", Some("cargo-binstall-aarch64-apple-darwin.zip")),
                ("macos-x86_64", Some("cargo-binstall-x86_64-apple-darwin.zip")),
                (
                    "windows-x86_64",
                    Some("cargo-binstall-x86_64-pc-windows-msvc.zip"),
                ),
                (
                    "windows-aarch64",
                    Some("cargo-binstall-aarch64-pc-windows-msvc.zip"),
                ),
                (
                    "linux-armv7",
                    Some("cargo-binstall-armv7-unknown-linux-gnueabihf.tgz"),
                ),
            ],
        );
    }

    #[test]
    fn caddy_2_9_0_among_its_signatures_certificates_and_sboms() {
        assert_choices(
            fixture!("caddy.txt"),
            &[
                ("linux-x86_64", Some("caddy_2.9.0_linux_amd64.tar.gz")),
                ("linux-aarch64", Some("caddy_2.9.0_linux_arm64.tar.gz")),
                ("macos-aarch64", Some("caddy_2.9.0_mac_arm64.tar.gz")),
                ("macos-x86_64", Some("caddy_2.9.0_mac_amd64.tar.gz")),
                ("windows-x86_64", Some("caddy_2.9.0_windows_amd64.zip")),
                ("windows-aarch64", Some("caddy_2.9.0_windows_arm64.zip")),
                ("linux-armv7", Some("caddy_2.9.0_linux_armv7.tar.gz")),
            ],
        );
    }

    #[test]
    fn our_release_layout() {
        assert_choices(
            fixture!("personal-ai-agent.txt"),
            &[
                ("linux-x86_64", Some("PersonalAIAgent-linux-x86_64-1.2.0.tar.gz")),
                (
                    "linux-aarch64",
                    Some("PersonalAIAgent-linux-aarch64-1.2.0.tar.gz"),
                ),
                (
                    "macos-aarch64",
                    Some("PersonalAIAgent-macos-aarch64-1.2.0.tar.gz"),
                ),
                ("macos-x86_64", Some("PersonalAIAgent-macos-x86_64-1.2.0.tar.gz")),
                ("windows-x86_64", Some("PersonalAIAgent-windows-x86_64-1.2.0.zip")),
                ("windows-aarch64", None),
                ("linux-armv7", None),
            ],
        );
    }

    /// An independent reading of a name, written apart from the classifier on purpose: the OS and
    /// architecture words it contains, by the plainest spellings only.
    fn plain_words(name: &str) -> (Vec<&'static str>, Vec<&'static str>) {
        let lower = name
            .to_ascii_lowercase()
            .replace("x86_64", "amd64")
            .replace("x86-64", "amd64");
        let mut oses = Vec::new();
        let mut arches = Vec::new();
        // A zipped-up application bundle (`Name.app.tar.gz`) is macOS software.
        if lower.contains(".app.") {
            oses.push("macos");
        }
        for word in lower.split(|c: char| !c.is_ascii_alphanumeric()) {
            match word {
                "linux" | "deb" | "rpm" | "appimage" => oses.push("linux"),
                "darwin" | "macos" | "osx" | "mac" | "apple" | "dmg" | "pkg" => oses.push("macos"),
                "windows" | "win" | "win32" | "win64" | "exe" | "msi" => oses.push("windows"),
                "freebsd" | "netbsd" | "openbsd" | "android" | "illumos" | "solaris" => oses.push("other"),
                "amd64" | "x64" => arches.push("x86_64"),
                "aarch64" | "arm64" => arches.push("aarch64"),
                "i386" | "i686" | "386" | "x86" => arches.push("x86"),
                "armv7" | "armhf" => arches.push("armv7"),
                "arm" | "armv5" | "armv6" | "ppc64le" | "powerpc64" | "powerpc64le" | "s390x" | "riscv64" => {
                    arches.push("other")
                }
                _ => {}
            }
        }
        (oses, arches)
    }

    #[test]
    fn no_fixture_ever_yields_an_asset_for_another_os_or_architecture() {
        let mut choices = 0;
        for fixture in fixtures() {
            let assets = fixture.assets();
            for target in Platform::SUPPORTED {
                let Some(asset) = choose_asset(&assets, &target) else {
                    continue;
                };
                choices += 1;
                let context = format!("{} on {target}: {}", fixture.file, asset.name);
                assert!(!is_auxiliary_asset(&asset.name), "{context} is auxiliary");
                assert!(
                    archive_kind(&asset.name).is_some(),
                    "{context} is not installable"
                );
                let (oses, arches) = plain_words(&asset.name);
                assert!(!oses.is_empty(), "{context} names no OS");
                assert!(
                    oses.iter().all(|&os| os == target.os.as_str()),
                    "{context} names {oses:?}"
                );
                let wrong_arches: Vec<&str> = arches
                    .iter()
                    .copied()
                    .filter(|&arch| arch != target.arch.as_str())
                    .collect();
                assert!(wrong_arches.is_empty(), "{context} names {wrong_arches:?}");
            }
        }
        assert!(
            choices > 60,
            "only {choices} choices were made across the fixtures"
        );
    }

    #[test]
    fn every_fixture_is_a_real_list_with_a_comment_naming_its_source() {
        for fixture in fixtures() {
            let first = fixture.text.lines().next().unwrap_or_default();
            assert!(
                first.starts_with("# ") && first.contains('/'),
                "{}: {first}",
                fixture.file
            );
            assert!(
                fixture.names().len() >= 6,
                "{} lists too few assets",
                fixture.file
            );
            assert!(
                fixture
                    .names()
                    .iter()
                    .all(|name| !name.contains(char::is_whitespace)),
                "{}",
                fixture.file
            );
        }
    }
}
