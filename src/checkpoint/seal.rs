//! The manifest's seal: an XXH3-128 of the manifest's own bytes, written as its first field.
//! The manifest already records a checksum of every other file of the checkpoint, so the seal
//! covers the pair — heads, tuned layers, log and what the manifest says about them. Any edit
//! (a `frost_line`, a task's kind or layer, a class name) or damage breaks it.
//!
//! The seal is over the bytes, not a re-serialisation, so nothing depends on how JSON numbers
//! round-trip. It carries no secret: someone who rewrites the manifest and computes the seal
//! again gets past it, which is why every field is also checked for meaning on load
//! ([`super::Manifest::validate`]).

const FIELD: &str = "  \"seal\": \"";
const PREFIX: &str = "xxh3-128:";

fn digest(body: &[u8]) -> String {
    format!("{PREFIX}{:032x}", xxhash_rust::xxh3::xxh3_128(body))
}

/// `body` (pretty JSON of an object, as `serde_json::to_vec_pretty` writes it) with the seal
/// of its bytes as the object's first field.
pub fn seal(body: &[u8]) -> Vec<u8> {
    debug_assert!(body.starts_with(b"{\n"));
    let mut out = Vec::with_capacity(body.len() + 64);
    out.extend_from_slice(b"{\n");
    out.extend_from_slice(FIELD.as_bytes());
    out.extend_from_slice(digest(body).as_bytes());
    out.extend_from_slice(b"\",\n");
    out.extend_from_slice(&body[2..]);
    out
}

/// The recorded seal and the sealed body of a manifest's text; `None` when it has no seal.
pub fn split(text: &str) -> Option<(&str, String)> {
    let rest = text.strip_prefix("{\n")?.strip_prefix(FIELD)?;
    let (recorded, body_rest) = rest.split_once("\",\n")?;
    Some((recorded, format!("{{\n{body_rest}")))
}

/// Checks the seal of a manifest's text; `Err` says what is wrong, for a message that names
/// the file.
pub fn verify(text: &str) -> Result<(), String> {
    let Some((recorded, body)) = split(text) else {
        return Err(
            "the manifest is not sealed (its first field must be \"seal\"); it was edited or written by something other than frostline: train again"
                .into(),
        );
    };
    let actual = digest(body.as_bytes());
    if recorded != actual {
        return Err(format!(
            "the manifest's seal does not match its contents (sealed {recorded}, contents give {actual}): it was edited or damaged after frostline wrote it; restore it or train again"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_manifest_verifies_and_any_edit_is_caught() {
        let body =
            serde_json::to_vec_pretty(&serde_json::json!({"frost_line": 5, "x": [0.1]})).unwrap();
        let sealed = String::from_utf8(seal(&body)).unwrap();
        verify(&sealed).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&sealed).unwrap();
        assert_eq!(parsed["frost_line"], 5);
        let edited = sealed.replace("\"frost_line\": 5", "\"frost_line\": 6");
        assert!(verify(&edited).unwrap_err().contains("does not match"));
        assert!(verify(std::str::from_utf8(&body).unwrap())
            .unwrap_err()
            .contains("not sealed"));
        let cut = &sealed[..sealed.len() / 2];
        assert!(verify(cut).is_err());
    }
}
