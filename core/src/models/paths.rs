//! File paths that come from outside (annotations, tar entries, Hub file lists), checked before
//! they touch the file system.

/// Checks a relative path named by a manifest, an archive or a file list: `/`-separated
/// components, none empty, `.` or `..`; no NUL, no control characters, no backslash; at most
/// 4096 bytes and 255 per component. Returns the path as it will be created under a tree.
pub fn check_relative(path: &str) -> Result<String, String> {
    let shown = path.escape_debug();
    if path.is_empty() {
        return Err("an empty file path".into());
    }
    if path.starts_with('/') {
        return Err(format!("`{shown}` is an absolute path: model files must be relative to the model's directory"));
    }
    if path.len() > 4096 || path.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!("`{shown}` contains a control character or a backslash, or is too long"));
    }
    for component in path.split('/') {
        match component {
            "" => return Err(format!("`{shown}` has an empty component (`//` or a trailing `/`)")),
            "." | ".." => {
                return Err(format!("`{shown}` contains `{component}`: paths must stay inside the model's directory"))
            }
            c if c.len() > 255 => return Err(format!("`{shown}`: a component is longer than 255 bytes")),
            _ => {}
        }
    }
    Ok(path.to_owned())
}

/// A tar entry's path: a leading `./` is allowed (and removed), directories may end in `/`.
pub fn check_archive_entry(path: &str) -> Result<Option<String>, String> {
    let trimmed = path.strip_prefix("./").unwrap_or(path).trim_end_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        return Ok(None);
    }
    check_relative(trimmed).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_rejected() {
        for bad in ["../../etc/passwd", "/etc/passwd", "a/../../b", "a//b", "a/./b", "a\0b", "a\\..\\b", "", "a/"] {
            assert!(check_relative(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(check_relative("weights/model-00001.safetensors").as_deref(), Ok("weights/model-00001.safetensors"));
        assert_eq!(check_archive_entry("./models/a.gguf"), Ok(Some("models/a.gguf".into())));
        assert_eq!(check_archive_entry("./"), Ok(None));
        assert!(check_archive_entry("./../x").is_err());
    }
}
