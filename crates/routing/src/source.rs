//! Route sources and prefix matching (reference §2.3, `CustomMessageSource.cs`).
//!
//! A route source is normalised by trimming, dropping one trailing `*`, dropping trailing `/`
//! and ending it with exactly one `/`: `/messages/*` becomes `/messages/`, `/*` becomes `/`.
//! A message matches when its source followed by `/` starts with that, ignoring ASCII case.
//! A `*` elsewhere is not a wildcard.

use std::fmt;

use crate::message::{RoutableMessage, SystemProperty};

/// The source all twin change notifications come from.
pub const TWIN_CHANGE_NOTIFICATIONS: &str = "/twinChangeNotifications";

/// A normalised route source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    /// Normalised: ends with exactly one `/`.
    prefix: String,
}

impl Source {
    /// Normalises a source as written in a route.
    pub fn new(written: &str) -> Self {
        let trimmed = written.trim();
        let trimmed = trimmed.strip_suffix('*').unwrap_or(trimmed);
        let trimmed = trimmed.trim_end_matches('/');
        Self {
            prefix: format!("{trimmed}/"),
        }
    }

    /// The normalised prefix, e.g. `/messages/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// True when a message with source `message_source` comes from this route source.
    pub fn matches(&self, message_source: &str) -> bool {
        // `message_source + "/"` starts with the prefix, without building that string.
        let message_source = message_source.trim_end_matches('/');
        let prefix = self.prefix.as_bytes();
        let source = message_source.as_bytes();
        if prefix.len() <= source.len() {
            source[..prefix.len()].eq_ignore_ascii_case(prefix)
        } else {
            prefix.len() == source.len() + 1 && prefix[..source.len()].eq_ignore_ascii_case(source)
        }
    }

    /// True for `/twinChangeNotifications`, the only source `twin_change_includes` may be used with.
    pub fn is_twin_change_notifications(&self) -> bool {
        self.prefix
            .trim_end_matches('/')
            .eq_ignore_ascii_case(TWIN_CHANGE_NOTIFICATIONS)
    }

    /// True for `/messages/events…`, which IoT Hub documents but which matches nothing on the edge.
    pub fn is_hub_only(&self) -> bool {
        let lower = self.prefix.to_ascii_lowercase();
        lower.starts_with("/messages/events/")
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefix)
    }
}

/// The source the edge hub assigns to a message (`RoutingMessageConverter.GetMessageSource`).
///
/// `messageType = twinChangeNotification` gives `/twinChangeNotifications`; a message from a
/// module gives `/messages/modules/{module}/outputs/{output}` (or `/messages/modules/{module}`
/// without an output name); anything else (leaf-device telemetry) gives `/messages`.
pub fn message_source<M: RoutableMessage + ?Sized>(message: &M) -> String {
    source_for(
        message.system_property(SystemProperty::MessageType),
        message.system_property(SystemProperty::ConnectionModuleId),
        message.system_property(SystemProperty::OutputName),
    )
}

/// [`message_source`] from the three system properties it depends on.
pub fn source_for(
    message_type: Option<&str>,
    module_id: Option<&str>,
    output: Option<&str>,
) -> String {
    if message_type.is_some_and(|t| t.eq_ignore_ascii_case("twinChangeNotification")) {
        return TWIN_CHANGE_NOTIFICATIONS.to_owned();
    }
    match (
        module_id.filter(|m| !m.is_empty()),
        output.filter(|o| !o.is_empty()),
    ) {
        (Some(module), Some(output)) => format!("/messages/modules/{module}/outputs/{output}"),
        (Some(module), None) => format!("/messages/modules/{module}"),
        (None, _) => "/messages".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    const TELEMETRY: &str = "/messages";
    const MODULE_NO_OUTPUT: &str = "/messages/modules/ModId";
    const MODULE_OUTPUT: &str = "/messages/modules/ModId/outputs/Out1";
    const TWIN: &str = "/twinChangeNotifications";

    fn matches(route: &str, message: &str) -> bool {
        Source::new(route).matches(message)
    }

    #[test]
    fn normalisation_strips_star_and_slashes_and_ends_with_one_slash() {
        assert_eq!(Source::new("/messages/*").prefix(), "/messages/");
        assert_eq!(Source::new("/*").prefix(), "/");
        assert_eq!(
            Source::new(" /messages/modules/ ").prefix(),
            "/messages/modules/"
        );
        assert_eq!(Source::new("/messages//").prefix(), "/messages/");
    }

    #[test]
    fn slash_star_matches_every_source_including_twin_changes() {
        for m in [TELEMETRY, MODULE_NO_OUTPUT, MODULE_OUTPUT, TWIN] {
            assert!(matches("/*", m), "{m}");
        }
    }

    #[test]
    fn messages_star_matches_all_telemetry_but_not_twin_changes() {
        for m in [TELEMETRY, MODULE_NO_OUTPUT, MODULE_OUTPUT] {
            assert!(matches("/messages/*", m), "{m}");
            assert!(matches("/messages", m), "{m}");
        }
        assert!(!matches("/messages/*", TWIN));
    }

    #[test]
    fn messages_modules_matches_module_telemetry_only() {
        assert!(!matches("/messages/modules/*", TELEMETRY));
        assert!(matches("/messages/modules/*", MODULE_NO_OUTPUT));
        assert!(matches("/messages/modules", MODULE_OUTPUT));
    }

    #[test]
    fn a_module_source_matches_every_output_of_that_module_and_no_other_module() {
        assert!(matches("/messages/modules/ModId", MODULE_NO_OUTPUT));
        assert!(matches("/messages/modules/ModId/*", MODULE_OUTPUT));
        assert!(!matches("/messages/modules/Mod", MODULE_OUTPUT));
        assert!(!matches("/messages/modules/ModId2", MODULE_OUTPUT));
    }

    #[test]
    fn an_output_source_matches_that_output_only() {
        assert!(matches(
            "/messages/modules/ModId/outputs/Out1",
            MODULE_OUTPUT
        ));
        assert!(!matches(
            "/messages/modules/ModId/outputs/Out",
            MODULE_OUTPUT
        ));
        assert!(!matches(
            "/messages/modules/ModId/outputs/Out1",
            "/messages/modules/ModId/outputs/Out10"
        ));
        assert!(!matches(
            "/messages/modules/ModId/outputs/Out1",
            MODULE_NO_OUTPUT
        ));
    }

    #[test]
    fn matching_ignores_case() {
        assert!(matches("/MESSAGES/modules/modid", MODULE_OUTPUT));
        assert!(matches("/twinchangenotifications", TWIN));
    }

    #[test]
    fn a_star_in_the_middle_is_not_a_wildcard() {
        assert!(!matches("/*/messages/*", TELEMETRY));
        assert!(!matches("/messages/modules/*/outputs/Out1", MODULE_OUTPUT));
    }

    #[test]
    fn messages_events_matches_nothing_on_the_edge() {
        for m in [TELEMETRY, MODULE_NO_OUTPUT, MODULE_OUTPUT, TWIN] {
            assert!(!matches("/messages/events", m));
        }
        assert!(Source::new("/messages/events").is_hub_only());
    }

    #[test]
    fn trailing_slashes_on_message_sources_do_not_matter() {
        assert!(matches(
            "/messages/modules/ModId/outputs/Out1",
            "/messages/modules/ModId/outputs/Out1/"
        ));
        assert!(matches("/messages", "/messages/"));
    }

    #[test]
    fn the_hub_assigns_sources_from_system_properties() {
        let twin = Message::new("").with_system_property("messageType", "twinChangeNotification");
        assert_eq!(message_source(&twin), TWIN);
        let module = Message::new("")
            .with_system_property("connectionModuleId", "m1")
            .with_system_property("outputName", "o1");
        assert_eq!(message_source(&module), "/messages/modules/m1/outputs/o1");
        let module = Message::new("").with_system_property("connectionModuleId", "m1");
        assert_eq!(message_source(&module), "/messages/modules/m1");
        let device = Message::new("").with_system_property("connectionDeviceId", "d1");
        assert_eq!(message_source(&device), "/messages");
    }

    #[test]
    fn twin_change_source_is_recognised() {
        assert!(Source::new("/twinChangeNotifications").is_twin_change_notifications());
        assert!(Source::new("/twinChangeNotifications/*").is_twin_change_notifications());
        assert!(!Source::new("/*").is_twin_change_notifications());
    }
}
