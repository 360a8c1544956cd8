//! Container image references as IoT Edge accepts them (`DockerConfig.ValidateAndGetImage`).
//!
//! The agent's rule is deliberately looser than Docker's:
//! `^(?<repo>([^/]*/)*)(?<image>[^/:]+)(?<tag>:[^/:]+)?$` after trimming, with `:latest` appended
//! when there is no tag. A leading `$` is only allowed as the nested-edge form
//! `$upstream:<port>/…`, which the agent resolves to the parent device. We also reject
//! whitespace inside the reference, which no registry accepts.

/// The tag IoT Edge appends to an image without one.
pub const DEFAULT_TAG: &str = "latest";

/// Why an image reference is rejected.
pub(crate) fn problem(image: &str) -> Option<&'static str> {
    let image = image.trim();
    if image.is_empty() {
        return Some("the image must not be empty");
    }
    if image.chars().any(char::is_whitespace) {
        return Some("an image reference cannot contain whitespace");
    }
    if let Some(rest) = image.strip_prefix('$') {
        let nested = rest
            .strip_prefix("upstream:")
            .is_some_and(|port| port.starts_with(|c: char| ('1'..='9').contains(&c)));
        if !nested {
            return Some("a leading '$' is only allowed as \"$upstream:<port>/<image>\"");
        }
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    let mut parts = last.split(':');
    let name = parts.next().unwrap_or_default();
    let tag = parts.next();
    if name.is_empty() {
        return Some("the image name after the last '/' is empty");
    }
    if tag == Some("") {
        return Some("the tag after ':' is empty");
    }
    if parts.next().is_some() {
        return Some("the image name after the last '/' has more than one ':'");
    }
    None
}

/// Whether the last path segment carries a `:tag`.
fn has_tag(image: &str) -> bool {
    image
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
}

/// `image` with `:latest` appended when it has no tag, as the agent pulls it.
pub fn with_default_tag(image: &str) -> String {
    let image = image.trim();
    if has_tag(image) {
        image.to_owned()
    } else {
        format!("{image}:{DEFAULT_TAG}")
    }
}

/// The registry host of `image` (`myacr.azurecr.io`, `localhost:5000`, `$upstream:443`), or
/// `None` for Docker Hub images such as `nginx` or `library/nginx`. Docker's rule: the first
/// segment is a registry if it contains `.` or `:`, or is `localhost`.
pub fn registry(image: &str) -> Option<&str> {
    let image = image.trim();
    let (first, _) = image.split_once('/')?;
    (first.contains(['.', ':']) || first == "localhost").then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_world_images_are_accepted() {
        for ok in [
            "mcr.microsoft.com/azureiotedge-agent:1.5",
            "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5",
            "myacr.azurecr.io/team/filter:0.0.1-amd64",
            "localhost:5000/filter",
            "nginx",
            "library/nginx:1.25",
            "$upstream:443/azureiotedge-agent:1.5",
            "registry.example.com/img@sha256:0123abcd",
            "  padded:1.0  ",
        ] {
            assert_eq!(problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn malformed_images_are_rejected_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("my image:1", "whitespace"),
            ("repo/", "empty"),
            ("img:", "tag"),
            ("img:1:2", "more than one"),
            ("$other/img:1", "$upstream"),
            ("$upstream/img:1", "$upstream"),
            ("$upstream:0443/img:1", "$upstream"),
        ];
        for (image, needle) in cases {
            let reason = problem(image).unwrap_or_default();
            assert!(reason.contains(needle), "{image:?}: {reason:?}");
        }
    }

    #[test]
    fn images_without_a_tag_get_latest() {
        assert_eq!(with_default_tag("nginx"), "nginx:latest");
        assert_eq!(
            with_default_tag("localhost:5000/filter"),
            "localhost:5000/filter:latest"
        );
        assert_eq!(with_default_tag("a/b:1.0"), "a/b:1.0");
        assert_eq!(with_default_tag(" a:1 "), "a:1");
    }

    #[test]
    fn registry_is_the_first_segment_when_it_looks_like_a_host() {
        assert_eq!(
            registry("myacr.azurecr.io/filter:1"),
            Some("myacr.azurecr.io")
        );
        assert_eq!(registry("localhost:5000/filter"), Some("localhost:5000"));
        assert_eq!(registry("localhost/filter"), Some("localhost"));
        assert_eq!(registry("$upstream:443/agent:1"), Some("$upstream:443"));
        assert_eq!(registry("library/nginx"), None);
        assert_eq!(registry("nginx:1"), None);
    }
}
