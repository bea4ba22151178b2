//! Checksum files as releases publish them: GNU `sha256sum` output (`<hex>  name`, `<hex> *name`), BSD
//! `sha256sum --tag` / `shasum` output (`SHA256 (name) = <hex>`), a combined `SHA256SUMS`, and a
//! per-asset `<name>.sha256` holding the hash alone or the hash and the name.
//!
//! Files made on Windows (CRLF), with `#` comments, blank lines, `./` prefixes or GNU's backslash-escaped
//! names all read. [`parse_checksums`] is strict (every line must be a SHA256 line) and is what `release
//! pack` uses on its own files; [`lookup_checksum`] is lenient, skipping lines it cannot use (a SHA512 line
//! in a mixed file), because a checksum file is only a source of expected values: what matters is that the
//! one line for our asset is unambiguous.

use super::VerifyError;

/// One SHA256 line: the (unescaped, `./`-stripped) name, empty for a bare hash, and the lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    name: String,
    sha256: String,
}

/// What one line of a checksum file is.
enum Line {
    /// Blank or a `#` comment.
    Nothing,
    Entry(Entry),
    /// Anything else, with the reason it is not a SHA256 line.
    Unusable(&'static str),
}

/// Parses a whole checksum file into `(name, sha256)` pairs, in file order. A bare hash (the form of many
/// per-asset `.sha256` files) yields an empty name, meaning "the file this checksum file is named after".
/// Hashes come back lowercase; names lose a leading `./`.
pub fn parse_checksums(text: &str) -> Result<Vec<(String, String)>, VerifyError> {
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        match classify(raw) {
            Line::Nothing => {}
            Line::Entry(entry) => entries.push((entry.name, entry.sha256)),
            Line::Unusable(reason) => {
                return Err(VerifyError::InvalidChecksumLine {
                    line_number: index + 1,
                    line: shorten(raw),
                    reason,
                });
            }
        }
    }
    Ok(entries)
}

/// The SHA256 a checksum file gives for `asset_name` (lowercase hex), or `None` when it gives none or
/// gives two different ones. See [`lookup_checksum`] for the rules.
pub fn find_checksum(text: &str, asset_name: &str) -> Option<String> {
    lookup_checksum(text, asset_name, "checksum file").ok().flatten()
}

/// The SHA256 `text` (the checksum file `file_name`) gives for `asset_name`.
///
/// A line matches when its name is the asset's name, or a path ending in `/<asset_name>` (files made with
/// `sha256sum dist/*`). A bare hash matches only when it is the file's only entry and the file is named
/// `<asset_name>.sha256` (or `.sha256sum`). Lines that are not SHA256 lines are skipped. Two lines that
/// give the same asset different hashes are an error: which one is right cannot be known.
pub fn lookup_checksum(text: &str, asset_name: &str, file_name: &str) -> Result<Option<String>, VerifyError> {
    let entries: Vec<Entry> = text
        .lines()
        .filter_map(|line| match classify(line) {
            Line::Entry(entry) => Some(entry),
            _ => None,
        })
        .collect();
    let is_per_asset_file = [".sha256", ".sha256sum"]
        .iter()
        .any(|suffix| file_name.strip_suffix(suffix) == Some(asset_name));
    let mut found: Option<String> = None;
    for entry in &entries {
        let matches = if entry.name.is_empty() {
            is_per_asset_file && entries.len() == 1
        } else {
            entry.name == asset_name
                || entry
                    .name
                    .strip_suffix(asset_name)
                    .is_some_and(|dir| dir.ends_with('/') || dir.ends_with('\\'))
        };
        if !matches {
            continue;
        }
        match &found {
            Some(previous) if *previous != entry.sha256 => {
                return Err(VerifyError::ConflictingChecksums {
                    asset: asset_name.to_owned(),
                    first: format!("{previous} ({file_name})"),
                    second: format!("{} ({file_name})", entry.sha256),
                });
            }
            _ => found = Some(entry.sha256.clone()),
        }
    }
    Ok(found)
}

/// One line in GNU `sha256sum` text form (`<hex>  <name>`), as `sha256sum -c` reads it.
pub fn gnu_line(sha256: &str, name: &str) -> String {
    if name.contains(['\\', '\n', '\r']) {
        // GNU's escaping: a leading backslash says the name has `\\`, `\n` and `\r` escapes.
        let escaped = name
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r");
        format!("\\{sha256}  {escaped}\n")
    } else {
        format!("{sha256}  {name}\n")
    }
}

/// Whether `text` is 64 hex digits.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn classify(raw: &str) -> Line {
    // `lines()` already removed `\n` and `\r\n`; a stray `\r` or a BOM from an editor goes too.
    let line = raw.trim_start_matches('\u{feff}').trim_end_matches('\r');
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Line::Nothing;
    }
    if let Some(rest) = trimmed
        .strip_prefix("SHA256 (")
        .or_else(|| trimmed.strip_prefix("SHA256("))
    {
        return classify_bsd(rest);
    }
    match classify_gnu(trimmed) {
        Line::Unusable(_) if trimmed.contains(" (") && trimmed.contains(") = ") => {
            Line::Unusable("it is a checksum of another algorithm, not SHA256")
        }
        other => other,
    }
}

/// The part of `SHA256 (name) = hex` after `SHA256 (`. The name may itself contain `) = `, so the hash is
/// taken from the end.
fn classify_bsd(rest: &str) -> Line {
    let Some((name, hex)) = rest.rsplit_once(") = ").or_else(|| rest.rsplit_once(")= ")) else {
        return Line::Unusable("it starts like a BSD line but lacks `) = <hash>`");
    };
    let hex = hex.trim();
    if !is_sha256_hex(hex) {
        return Line::Unusable("the hash is not 64 hex digits");
    }
    if name.is_empty() {
        return Line::Unusable("the file name is empty");
    }
    Line::Entry(Entry {
        name: clean_name(name),
        sha256: hex.to_ascii_lowercase(),
    })
}

fn classify_gnu(line: &str) -> Line {
    // A leading backslash marks a name with escapes (GNU coreutils 8.x and later).
    let (escaped, line) = match line.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (hex, rest) = match line.find(|c: char| c.is_ascii_whitespace()) {
        Some(at) => line.split_at(at),
        None => (line, ""),
    };
    if !is_sha256_hex(hex) {
        return Line::Unusable(if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            "the hash is not 64 hex digits (not SHA256)"
        } else {
            "it is neither `<hash>  <name>` nor `SHA256 (<name>) = <hash>`"
        });
    }
    let sha256 = hex.to_ascii_lowercase();
    if rest.trim().is_empty() {
        return Line::Entry(Entry {
            name: String::new(),
            sha256,
        });
    }
    // `<hex>  name` (text mode) or `<hex> *name` (binary mode); some tools write a single space.
    let rest = rest.strip_prefix([' ', '\t']).unwrap_or(rest);
    let name = match rest.strip_prefix('*').or_else(|| rest.strip_prefix(' ')) {
        Some(name) => name,
        None => rest,
    };
    let name = if escaped {
        unescape_gnu(name)
    } else {
        name.to_owned()
    };
    if name.trim().is_empty() {
        return Line::Unusable("the file name is empty");
    }
    Line::Entry(Entry {
        name: clean_name(&name),
        sha256,
    })
}

fn unescape_gnu(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn clean_name(name: &str) -> String {
    let mut name = name;
    while let Some(rest) = name.strip_prefix("./") {
        name = rest;
    }
    name.to_owned()
}

/// A line for an error message: at most 120 characters.
fn shorten(line: &str) -> String {
    if line.chars().count() <= 120 {
        line.to_owned()
    } else {
        let mut short: String = line.chars().take(117).collect();
        short.push_str("...");
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn gnu_text_and_binary_lines_parse_with_crlf_comments_and_dot_slash() {
        let text = format!(
            "# made by CI\r\n{A}  ./one.tar.gz\r\n\r\n{}\t*two.zip\r\n",
            B.to_uppercase()
        );
        let parsed = parse_checksums(&text).unwrap();
        assert_eq!(
            parsed,
            vec![
                ("one.tar.gz".to_owned(), A.to_owned()),
                ("two.zip".to_owned(), B.to_owned())
            ]
        );
    }

    #[test]
    fn bsd_lines_parse_even_when_the_name_has_parentheses() {
        let text = format!("SHA256 (a (1).tar.gz) = {A}\nSHA256 (b.zip) = {B}\n");
        let parsed = parse_checksums(&text).unwrap();
        assert_eq!(parsed[0], ("a (1).tar.gz".to_owned(), A.to_owned()));
        assert_eq!(parsed[1], ("b.zip".to_owned(), B.to_owned()));
    }

    #[test]
    fn a_bare_hash_applies_only_to_the_file_its_checksum_file_is_named_after() {
        let text = format!("{A}\n");
        assert_eq!(
            lookup_checksum(&text, "x.zip", "x.zip.sha256").unwrap(),
            Some(A.to_owned())
        );
        assert_eq!(lookup_checksum(&text, "x.zip", "SHA256SUMS").unwrap(), None);
    }

    #[test]
    fn a_path_prefix_in_the_name_still_matches_the_asset() {
        let text = format!("{A}  dist/x.zip\n{B}  dist/other-x.zip\n");
        assert_eq!(find_checksum(&text, "x.zip"), Some(A.to_owned()));
    }

    #[test]
    fn two_different_hashes_for_one_asset_are_refused() {
        let text = format!("{A}  x.zip\n{B}  ./x.zip\n");
        let err = lookup_checksum(&text, "x.zip", "SHA256SUMS").unwrap_err();
        assert!(matches!(err, VerifyError::ConflictingChecksums { .. }), "{err}");
        assert_eq!(find_checksum(&text, "x.zip"), None);
    }

    #[test]
    fn lines_of_other_algorithms_are_errors_when_strict_and_skipped_when_looking_up() {
        let sha512 = "c".repeat(128);
        let text = format!("{sha512}  x.zip\nSHA512 (x.zip) = {sha512}\n{A}  x.zip\n");
        let err = parse_checksums(&text).unwrap_err();
        assert!(
            matches!(err, VerifyError::InvalidChecksumLine { line_number: 1, .. }),
            "{err}"
        );
        assert_eq!(find_checksum(&text, "x.zip"), Some(A.to_owned()));
    }

    #[test]
    fn escaped_gnu_names_round_trip() {
        let line = gnu_line(A, "odd\\name\nhere.zip");
        assert!(line.starts_with('\\'));
        assert_eq!(
            parse_checksums(&line).unwrap(),
            vec![("odd\\name\nhere.zip".to_owned(), A.to_owned())]
        );
    }
}
