//! The API's bearer token: 256 random bits from the OS's CSPRNG (`getrandom`), hex-encoded, made anew at
//! every owner start ([`create`], called by `ApiServer::start`) and kept in `<config dir>/api-token`,
//! readable only by the user. A token that outlives its owner is one a process that later takes the
//! owner's port could be handed (issue 18): a new owner never reuses it, so a backend of an earlier start
//! holds a token no later owner accepts.
//!
//! The file is replaced atomically: a temporary file in the same folder (mode 0600 on Unix; on Windows
//! its ACL is cut to this user before the token is written), written, flushed to disk, then renamed over
//! `api-token`. A client reading the file sees the old token or the new one, never half of one.
//!
//! On Windows the ACL is one entry granting this user (by SID) full control: `icacls <file> /reset`, then
//! `icacls <file> /inheritance:r /grant:r *<SID>:F`, both run from `%SystemRoot%\System32`, never from
//! `PATH`. A volume without permissions (FAT, exFAT) cannot be restricted: that is logged as a warning
//! naming the file, and the API still starts.
//!
//! Tokens are compared in constant time (`subtle`), so the time an answer takes says nothing about how
//! much of a guess was right.
//!
//! Two values are derived from the token with HMAC-SHA256 (keyed with the token's 64 hex characters as
//! ASCII), each under its own label so one can never be taken for the other:
//! - [`owner_proof`]: `HMAC(token, "pai-owner-proof:" + nonce)`, what `GET /api/owner/proof` answers, so
//!   the backend can tell the owner that started it from whatever else listens on its port before it
//!   sends the token there;
//! - [`page_key`]: `HMAC(token, "pai-agent-page-key")`, the key of the agent's web page for this owner
//!   start (`PAI_AGENT_PAGE_KEY`); every face that can read the token (the window, attached or not, and
//!   the CLI) can open the page with it, and nobody else can.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::Digest as _;
use subtle::ConstantTimeEq;

/// The token file's name in the config folder.
pub const TOKEN_FILE: &str = "api-token";
/// Random bytes per token (256 bits; the issue asks for at least 128).
const TOKEN_BYTES: usize = 32;
/// What [`owner_proof`] puts before the nonce.
pub const PROOF_LABEL: &str = "pai-owner-proof:";
/// What [`page_key`] signs.
pub const PAGE_KEY_LABEL: &str = "pai-agent-page-key";
/// The shortest and longest nonce `GET /api/owner/proof` takes, in bytes (twice as many hex digits).
pub const NONCE_BYTES: std::ops::RangeInclusive<usize> = 16..=64;

/// Why the token could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// A new token, written over `<config_dir>/api-token` (see the module's documentation).
pub fn create(config_dir: &Path) -> Result<(String, PathBuf), TokenError> {
    let path = config_dir.join(TOKEN_FILE);
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| TokenError::Io { action, path, source }
    };
    std::fs::create_dir_all(config_dir).map_err(io("create folder", config_dir))?;
    let token = random_hex(TOKEN_BYTES)?;
    // `tempfile` creates the file 0600 on Unix, and removes it if anything below fails.
    let mut temp = tempfile::Builder::new()
        .prefix(".api-token-")
        .tempfile_in(config_dir)
        .map_err(io("create a temporary file in", config_dir))?;
    // Restricted while still empty, so the token is never in a file others can read.
    restrict(temp.path()).map_err(io("restrict permissions of", temp.path()))?;
    temp.write_all(token.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .map_err(io("write", temp.path()))?;
    temp.persist(&path).map_err(|e| io("replace", &path)(e.error))?;
    // Put back to 0600 if a file with wider permissions was there (the rename keeps the new file's mode,
    // but say so: someone widened the old one).
    restrict(&path).map_err(io("restrict permissions of", &path))?;
    Ok((token, path))
}

/// `bytes` random bytes from the OS's CSPRNG, as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String, TokenError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(hex::encode(buffer))
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`. By hand over `sha2` 0.11: the `hmac` release that
/// matches it is not in our lock file, and these few lines are the whole algorithm.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = sha2::Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    sha2::Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// What the owner holding `token` answers to `GET /api/owner/proof?nonce=<nonce>`: hex of
/// `HMAC-SHA256(token, "pai-owner-proof:" + nonce)`, the nonce as sent.
pub fn owner_proof(token: &str, nonce: &str) -> String {
    hex::encode(hmac_sha256(
        token.as_bytes(),
        format!("{PROOF_LABEL}{nonce}").as_bytes(),
    ))
}

/// Whether `nonce` is what `GET /api/owner/proof` takes: 16 to 64 bytes as hex digits.
pub fn is_valid_nonce(nonce: &str) -> bool {
    nonce.len().is_multiple_of(2)
        && NONCE_BYTES.contains(&(nonce.len() / 2))
        && nonce.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The agent page's key for the owner start that made `token`: hex of `HMAC-SHA256(token,
/// "pai-agent-page-key")`.
pub fn page_key(token: &str) -> String {
    hex::encode(hmac_sha256(token.as_bytes(), PAGE_KEY_LABEL.as_bytes()))
}

/// The address that opens the agent's page on `port` for the owner start that made `token`.
pub fn page_url(port: u16, token: &str) -> String {
    format!("http://127.0.0.1:{port}/?key={}", page_key(token))
}

/// The token the current owner wrote in `config_dir`, if it can be read.
pub fn read(config_dir: &Path) -> Option<String> {
    std::fs::read_to_string(config_dir.join(TOKEN_FILE))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

#[cfg(unix)]
fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode != 0o600 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the API token file was readable by others; setting it to 0600");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// `System32`, where `whoami` and `icacls` are run from (never from `PATH`).
#[cfg(windows)]
fn system32() -> std::path::PathBuf {
    let system = std::env::var_os("SystemRoot").unwrap_or_else(|| "C:\\Windows".into());
    Path::new(&system).join("System32")
}

/// This user as `icacls` names it: `*<SID>`, else the user name.
#[cfg(windows)]
pub(crate) fn icacls_user() -> Option<String> {
    let system32 = system32();
    // This user's SID (`whoami /user /fo csv /nh` prints `"DOMAIN\user","S-1-5-…"`): it names the
    // account whatever the domain, the machine or a service account is called.
    std::process::Command::new(system32.join("whoami.exe"))
        .args(["/user", "/fo", "csv", "/nh"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.rsplit(',')
                .next()
                .map(|sid| sid.trim().trim_matches('"').to_owned())
        })
        .filter(|sid| sid.starts_with("S-1-"))
        .map(|sid| format!("*{sid}"))
        .or_else(|| std::env::var("USERNAME").ok().filter(|n| !n.is_empty()))
}

/// Leaves the folder `dir` (and what is made in it) to this user and the system alone: inherited entries
/// removed, full control for the user and SYSTEM, inherited by files and folders made inside.
#[cfg(windows)]
pub(crate) fn restrict_dir(dir: &Path) -> std::io::Result<()> {
    let Some(user) = icacls_user() else {
        return Err(std::io::Error::other("cannot tell which user this is"));
    };
    let output = std::process::Command::new(system32().join("icacls.exe"))
        .arg(dir)
        .args(["/inheritance:r", "/grant:r"])
        .arg(format!("{user}:(OI)(CI)F"))
        .args(["/grant:r", "*S-1-5-18:(OI)(CI)F", "/q"])
        .output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "icacls ended with {}",
            output.status
        )))
    }
}

/// Leaves the folder `dir` to this user alone (mode 0700).
#[cfg(unix)]
pub(crate) fn restrict_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(any(unix, windows)))]
pub(crate) fn restrict_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(windows)]
fn restrict(path: &Path) -> std::io::Result<()> {
    let system32 = system32();
    let user = icacls_user();
    let Some(user) = user else {
        tracing::warn!(path = %path.display(), "cannot tell which user this is; the API token file keeps the permissions of its folder");
        return Ok(());
    };
    let icacls = system32.join("icacls.exe");
    // Explicit entries others may have added go first (`/reset`), then the inherited ones, and one
    // grant for this user remains.
    for args in [
        vec![path.as_os_str().to_owned(), "/reset".into(), "/q".into()],
        icacls_args(path, &user),
    ] {
        let output = std::process::Command::new(&icacls).args(&args).output()?;
        if !output.status.success() {
            // A volume without ACLs (FAT, exFAT: a portable install on a USB stick) cannot be restricted;
            // the API still starts, and the log says where the token is.
            tracing::warn!(
                path = %path.display(),
                status = %output.status,
                "the API token file could not be made readable by this user alone (a volume without permissions?); anyone who can read that folder can drive this launcher's API"
            );
            return Ok(());
        }
    }
    Ok(())
}

/// Other systems have no permission model the launcher knows; the config folder is the user's own.
#[cfg(not(any(unix, windows)))]
fn restrict(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The `icacls` arguments that leave `path` readable and writable by `user` alone: inheritance removed
/// (`/inheritance:r` drops every inherited entry) and one explicit grant replacing any other (`/grant:r`).
#[cfg_attr(not(windows), allow(dead_code))]
fn icacls_args(path: &Path, user: &str) -> Vec<std::ffi::OsString> {
    vec![
        path.as_os_str().to_owned(),
        "/inheritance:r".into(),
        "/grant:r".into(),
        format!("{user}:F").into(),
        "/q".into(),
    ]
}

/// Whether `presented` is the token, in time that depends only on the lengths.
pub fn matches(token: &str, presented: &str) -> bool {
    token.len() == presented.len() && bool::from(token.as_bytes().ct_eq(presented.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_windows_acl_is_the_user_alone_without_inherited_entries() {
        let args = icacls_args(
            Path::new(r"C:\Users\ann\AppData\Roaming\pai\api-token"),
            r"HOST\ann",
        );
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            [
                r"C:\Users\ann\AppData\Roaming\pai\api-token",
                "/inheritance:r",
                "/grant:r",
                r"HOST\ann:F",
                "/q"
            ]
        );
    }

    #[test]
    fn the_token_is_long_random_new_at_every_start_and_compared_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (token, path) = create(dir.path()).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(read(dir.path()).as_deref(), Some(token.as_str()));
        let (again, _) = create(dir.path()).unwrap();
        assert_ne!(token, again, "a new token at every owner start");
        assert_eq!(
            read(dir.path()).as_deref(),
            Some(again.as_str()),
            "the file holds the new one"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != TOKEN_FILE)
            .collect();
        assert!(leftovers.is_empty(), "no temporary file left: {leftovers:?}");
        assert!(matches(&token, &token));
        assert!(!matches(&token, &token[..63]));
        let mut wrong = token.clone().into_bytes();
        wrong[10] = if wrong[10] == b'a' { b'b' } else { b'a' };
        assert!(!matches(&token, std::str::from_utf8(&wrong).unwrap()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            create(dir.path()).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // RFC 4231, test cases 1 and 6 (a key longer than the block is hashed first).
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn the_proof_and_the_page_key_depend_on_the_token_and_differ_from_each_other() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let nonce = "00".repeat(16);
        assert_eq!(owner_proof(&a, &nonce), owner_proof(&a, &nonce));
        assert_ne!(owner_proof(&a, &nonce), owner_proof(&b, &nonce));
        assert_ne!(owner_proof(&a, &nonce), owner_proof(&a, &"01".repeat(16)));
        assert_ne!(page_key(&a), page_key(&b));
        assert_ne!(page_key(&a), a);
        assert!(is_valid_nonce(&nonce));
        assert!(!is_valid_nonce(&"00".repeat(15)), "too short");
        assert!(!is_valid_nonce(&"00".repeat(65)), "too long");
        assert!(!is_valid_nonce(&format!("{}zz", "00".repeat(16))), "not hex");
        assert!(!is_valid_nonce(&"0".repeat(33)), "odd");
    }
}
