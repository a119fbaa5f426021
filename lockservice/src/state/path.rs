//! Paths: absolute, `/`-separated, no empty components, no trailing slash (except `/` itself),
//! no `.` or `..`, no control characters, bounded lengths. Validated before any command uses one,
//! so the rest of the state machine can split them without checking again.

/// Longest path, in bytes.
pub(super) const MAX_PATH_BYTES: usize = 1024;
/// Longest component, in bytes.
pub(super) const MAX_COMPONENT_BYTES: usize = 255;

/// The root, which always exists.
pub(super) const ROOT: &str = "/";

/// Checks a path; the error says why it is not one.
pub fn validate(path: &str) -> Result<(), String> {
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("path longer than {MAX_PATH_BYTES} bytes"));
    }
    if path == ROOT {
        return Ok(());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("path {path:?} is not absolute"));
    };
    for component in rest.split('/') {
        if component.is_empty() {
            return Err(format!("path {path:?} has an empty component"));
        }
        if component == "." || component == ".." {
            return Err(format!("path {path:?} has a {component:?} component"));
        }
        if component.len() > MAX_COMPONENT_BYTES {
            return Err(format!(
                "path {path:?} has a component longer than {MAX_COMPONENT_BYTES} bytes"
            ));
        }
        if component.chars().any(char::is_control) {
            return Err(format!("path {path:?} has a control character"));
        }
    }
    Ok(())
}

/// The parent's path and the last component of a valid path; `None` for `/`.
pub(super) fn split(path: &str) -> Option<(&str, &str)> {
    if path == ROOT {
        return None;
    }
    let slash = path.rfind('/')?;
    let parent = if slash == 0 { ROOT } else { &path[..slash] };
    Some((parent, &path[slash + 1..]))
}

/// A child's path from its parent's and its name.
pub(super) fn join(parent: &str, name: &str) -> String {
    if parent == ROOT {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_paths() {
        for p in ["/", "/a", "/tabula/servers/ts-1", "/a b/c-d_e.f", "/é"] {
            assert_eq!(validate(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn rejects_bad_paths() {
        let long_component = format!("/{}", "x".repeat(MAX_COMPONENT_BYTES + 1));
        let long_path = "/abcdefgh".repeat(MAX_PATH_BYTES / 9 + 1);
        for p in [
            "",
            "a",
            "a/b",
            "//",
            "/a/",
            "/a//b",
            "/./a",
            "/a/..",
            "/a\nb",
            "/a\0",
            long_component.as_str(),
            long_path.as_str(),
        ] {
            assert!(validate(p).is_err(), "{p:?}");
        }
        let max_component = format!("/{}", "x".repeat(MAX_COMPONENT_BYTES));
        assert_eq!(validate(&max_component), Ok(()));
    }

    #[test]
    fn splits_and_joins() {
        assert_eq!(split("/"), None);
        assert_eq!(split("/a"), Some(("/", "a")));
        assert_eq!(split("/a/b/c"), Some(("/a/b", "c")));
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a/b", "c"), "/a/b/c");
    }
}
