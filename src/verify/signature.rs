//! Minisign public keys and manifest signatures.
//!
//! Verification uses `minisign-verify` (small, no secret-key code). Only pre-hashed signatures, the
//! default of `minisign` 0.9 and later and of `release pack`, are accepted: the legacy mode signs the raw
//! bytes and has no reason to exist in new releases. The key id, shown by `minisign` as upper-case hex
//! without leading zeros, is read with the `minisign` crate's parsers so error messages can say which key signed what.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use super::VerifyError;
use super::manifest::MANIFEST_SIGNATURE_FILE;

const UNTRUSTED_COMMENT_PREFIX: &str = "untrusted comment:";

/// A minisign public key (Ed25519) that release manifests must be signed with.
#[derive(Clone, Debug)]
pub struct PublicKey {
    key: minisign_verify::PublicKey,
    key_id: String,
    base64: String,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.base64 == other.base64
    }
}
impl Eq for PublicKey {}

impl PublicKey {
    /// Reads a key from a `.pub` file as `minisign -G` writes it.
    pub fn from_file(path: &Path) -> Result<Self, VerifyError> {
        let text = std::fs::read_to_string(path).map_err(|source| VerifyError::Io {
            action: "read the public key file",
            path: path.to_path_buf(),
            source,
        })?;
        text.parse().map_err(|e| match e {
            VerifyError::InvalidPublicKey { reason, .. } => VerifyError::InvalidPublicKey {
                source_name: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    /// The key id as `minisign` prints it (upper-case hex, no leading zeros).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key's base64 line, as stored in the settings and in `PAI_UPDATE_PUBLIC_KEY`.
    pub fn to_base64(&self) -> String {
        self.base64.clone()
    }
}

impl FromStr for PublicKey {
    type Err = VerifyError;

    /// Reads the text of a `.pub` file (an `untrusted comment:` line and the base64 line) or the bare base64
    /// line. CRLF, surrounding blank lines and spaces are tolerated.
    fn from_str(text: &str) -> Result<Self, VerifyError> {
        let invalid = |reason: String| VerifyError::InvalidPublicKey {
            source_name: "the public key".to_owned(),
            reason,
        };
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with(UNTRUSTED_COMMENT_PREFIX));
        let Some(base64) = lines.next() else {
            return Err(invalid("it holds no key line".into()));
        };
        if lines.next().is_some() {
            return Err(invalid(
                "it holds more than one line besides the comment; give the .pub file or its base64 line"
                    .into(),
            ));
        }
        let key = minisign_verify::PublicKey::from_base64(base64)
            .map_err(|e| invalid(format!("the key line is not a minisign Ed25519 public key ({e})")))?;
        let key_id = minisign::PublicKey::from_base64(base64)
            .map(|k| key_id_hex(k.keynum()))
            .map_err(|e| invalid(format!("the key line cannot be read ({e})")))?;
        Ok(PublicKey {
            key,
            key_id,
            base64: base64.to_owned(),
        })
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "minisign key {}", self.key_id)
    }
}

/// Checks that `minisig_text` is a valid signature of exactly `manifest_bytes` by `key`.
pub fn verify_manifest(
    manifest_bytes: &[u8],
    minisig_text: &str,
    key: &PublicKey,
) -> Result<(), VerifyError> {
    let bad = |reason: String| VerifyError::BadSignature {
        file: MANIFEST_SIGNATURE_FILE.to_owned(),
        key_id: key.key_id.clone(),
        reason,
    };
    let signature = minisign_verify::Signature::decode(minisig_text).map_err(|e| {
        bad(format!(
            "it is not a minisign signature ({e}); it may be truncated"
        ))
    })?;
    match key.key.verify(manifest_bytes, &signature, false) {
        Ok(()) => Ok(()),
        Err(minisign_verify::Error::UnexpectedKeyId) => {
            let signer = signature_key_id(minisig_text).unwrap_or_else(|| "an unknown key".to_owned());
            Err(bad(format!(
                "it was made with key {signer}, not with the pinned key"
            )))
        }
        Err(minisign_verify::Error::UnexpectedAlgorithm) => Err(bad(
            "it is a legacy (not pre-hashed) signature; sign with minisign 0.9 or later, or `release pack`"
                .into(),
        )),
        Err(minisign_verify::Error::InvalidSignature) => Err(bad(
            "it does not match the manifest: the manifest or its signature was changed after signing".into(),
        )),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// The id of the key that made a signature, when the signature can be read.
pub fn signature_key_id(minisig_text: &str) -> Option<String> {
    minisign::SignatureBox::from_string(minisig_text)
        .ok()
        .map(|sig| key_id_hex(sig.keynum()))
}

/// `minisign` shows a key id as its 8 bytes read as a little-endian number, in upper-case hex without
/// leading zeros (`printf("%" PRIX64)`: one key in sixteen has a 15-digit id), and so do we, so the ids in
/// our messages are the ones users see in their `.pub` files.
pub(crate) fn key_id_hex(keynum: &[u8]) -> String {
    let mut bytes = [0u8; 8];
    let n = keynum.len().min(8);
    bytes[..n].copy_from_slice(&keynum[..n]);
    format!("{:X}", u64::from_le_bytes(bytes))
}
