//! The agent's names on the bus, and how service names become object paths.

/// The well-known bus name the agent owns (only root may own it: see the D-Bus policy file).
pub const BUS_NAME: &str = "org.aicontainers.Agent1";
/// The agent's root object: `Manager1` and the `ObjectManager` of every object below it.
pub const ROOT_PATH: &str = "/org/aicontainers/Agent1";
/// The interface of the root object.
pub const MANAGER_INTERFACE: &str = "org.aicontainers.Manager1";
/// The interface of each service object.
pub const SERVICE_INTERFACE: &str = "org.aicontainers.Service1";
/// Service objects live below this path, one per service.
pub const SERVICE_PATH_PREFIX: &str = "/org/aicontainers/Agent1/service";
/// The prefix of the agent's D-Bus error names.
pub const ERROR_PREFIX: &str = "org.aicontainers.Error";
/// The polkit action that covers every call that starts, stops or reloads services.
pub const ACTION_MANAGE_SERVICES: &str = "org.aicontainers.manage-services";
/// The model cache's object: `Models1`.
pub const MODELS_PATH: &str = "/org/aicontainers/Agent1/models";
/// The interface of the model cache's object.
pub const MODELS_INTERFACE: &str = "org.aicontainers.Models1";
/// The interface of each job object (a model pull).
pub const JOB_INTERFACE: &str = "org.aicontainers.Job1";
/// Job objects live below this path, numbered from 1 for the life of the agent.
pub const JOB_PATH_PREFIX: &str = "/org/aicontainers/Agent1/job";
/// The polkit action that covers pulling, removing and collecting models.
pub const ACTION_MANAGE_MODELS: &str = "org.aicontainers.manage-models";

/// The object path of job `n`.
pub fn job_path(n: u64) -> String {
    format!("{JOB_PATH_PREFIX}/{n}")
}

/// The object path of the service `name`: `/org/aicontainers/Agent1/service/<escaped name>`.
pub fn service_path(name: &str) -> String {
    format!("{SERVICE_PATH_PREFIX}/{}", escape_path_element(name))
}

/// Escapes `name` into one object path element the way systemd does for unit names: ASCII
/// letters and digits stay (but not a leading digit), every other byte becomes `_xx` (hex).
/// The empty name becomes `_`.
pub fn escape_path_element(name: &str) -> String {
    if name.is_empty() {
        return "_".into();
    }
    let mut out = String::with_capacity(name.len() * 3);
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// The inverse of [`escape_path_element`]; `None` when `element` is not an escaped name.
pub fn unescape_path_element(element: &str) -> Option<String> {
    if element == "_" {
        return Some(String::new());
    }
    let bytes = element.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = element.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_become_valid_paths_and_back() {
        for name in ["web", "llama-3.1_8b", "0day", "a", ""] {
            let path = service_path(name);
            assert!(zbus::zvariant::ObjectPath::try_from(path.as_str()).is_ok(), "{path}");
            let element = path.rsplit('/').next().expect("has an element");
            assert_eq!(unescape_path_element(element).as_deref(), Some(name));
        }
        assert_eq!(service_path("llama-3.1"), "/org/aicontainers/Agent1/service/llama_2d3_2e1");
        assert_eq!(escape_path_element("0day"), "_30day");
    }
}
