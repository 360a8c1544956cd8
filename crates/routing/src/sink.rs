//! Route sinks: `$upstream` and `BrokeredEndpoint("/modules/<module>/inputs/<input>")` (reference §2.4).

use std::fmt;

use crate::ast::{SinkAst, write_quoted};
use crate::error::RouteErrorKind;

/// Where a matching route delivers a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `$upstream`: the cloud (IoT Hub).
    Upstream,
    /// `BrokeredEndpoint("/modules/<module>/inputs/<input>")`: an input of a module on this device.
    ModuleInput {
        /// The target module's id.
        module: String,
        /// The target input's name.
        input: String,
    },
}

/// The endpoint id the edge hub uses for `$upstream` (reference §3.7).
pub const UPSTREAM_ENDPOINT_ID: &str = "iothub";

impl Endpoint {
    /// The store/queue id of this endpoint: `iothub`, or `{edge_device_id}/{module}/{input}`.
    pub fn id(&self, edge_device_id: &str) -> String {
        match self {
            Endpoint::Upstream => UPSTREAM_ENDPOINT_ID.to_owned(),
            Endpoint::ModuleInput { module, input } => format!("{edge_device_id}/{module}/{input}"),
        }
    }
}

impl fmt::Display for Endpoint {
    /// The canonical sink text: `$upstream` or `BrokeredEndpoint("/modules/m/inputs/i")`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Upstream => f.write_str("$upstream"),
            Endpoint::ModuleInput { module, input } => {
                f.write_str("BrokeredEndpoint(")?;
                write_quoted(f, &format!("/modules/{module}/inputs/{input}"))?;
                f.write_str(")")
            }
        }
    }
}

/// A note about a sink that is accepted (as the edge accepts it) but looks like a mistake.
pub(crate) type SinkNote = String;

/// Resolves a parsed sink to an endpoint, as `EndpointFactory.cs` does.
pub(crate) fn resolve(sink: &SinkAst) -> Result<(Endpoint, Option<SinkNote>), RouteErrorKind> {
    match sink {
        SinkAst::System(name) if name.eq_ignore_ascii_case("$upstream") => {
            Ok((Endpoint::Upstream, None))
        }
        SinkAst::System(name) => {
            Err(RouteErrorKind::UnsupportedSystemEndpoint { name: name.clone() })
        }
        SinkAst::Function { name, address } if name.eq_ignore_ascii_case("BrokeredEndpoint") => {
            brokered(address)
        }
        SinkAst::Function { name, .. } => {
            Err(RouteErrorKind::UnsupportedFunctionEndpoint { name: name.clone() })
        }
    }
}

fn brokered(address: &str) -> Result<(Endpoint, Option<SinkNote>), RouteErrorKind> {
    let invalid = |reason: &str| RouteErrorKind::BrokeredEndpointAddress {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    let segments: Vec<&str> = address.trim_matches('/').split('/').collect();
    let [first, module, third, input] = segments.as_slice() else {
        return Err(invalid(
            "expected exactly four segments, /modules/<module>/inputs/<input>",
        ));
    };
    if module.is_empty() || input.is_empty() {
        return Err(invalid("the module and input names must not be empty"));
    }
    // Q (§2.4): the edge does not check segments 0 and 2; we accept the same addresses and say so.
    let note = (*first != "modules" || *third != "inputs").then(|| {
        format!(
            "BrokeredEndpoint address '{address}' is read as module '{module}', input '{input}'; \
             segments 1 and 3 are usually 'modules' and 'inputs'"
        )
    });
    Ok((
        Endpoint::ModuleInput {
            module: (*module).to_owned(),
            input: (*input).to_owned(),
        },
        note,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(name: &str, address: &str) -> SinkAst {
        SinkAst::Function {
            name: name.into(),
            address: address.into(),
        }
    }

    #[test]
    fn upstream_is_case_insensitive() {
        let (endpoint, note) = resolve(&SinkAst::System("$UpStream".into())).unwrap();
        assert_eq!(endpoint, Endpoint::Upstream);
        assert!(note.is_none());
    }

    #[test]
    fn other_system_endpoints_are_rejected() {
        let err = resolve(&SinkAst::System("$twin".into())).unwrap_err();
        assert!(matches!(
            err,
            RouteErrorKind::UnsupportedSystemEndpoint { .. }
        ));
    }

    #[test]
    fn brokered_endpoint_names_module_and_input() {
        let (endpoint, note) = resolve(&function(
            "brokeredEndpoint",
            "/modules/filter/inputs/input1",
        ))
        .unwrap();
        assert_eq!(
            endpoint,
            Endpoint::ModuleInput {
                module: "filter".into(),
                input: "input1".into()
            }
        );
        assert!(note.is_none());
        assert_eq!(endpoint.id("dev1"), "dev1/filter/input1");
        assert_eq!(
            endpoint.to_string(),
            r#"BrokeredEndpoint("/modules/filter/inputs/input1")"#
        );
    }

    #[test]
    fn brokered_endpoint_trims_slashes_and_accepts_other_segment_names_with_a_note() {
        let (endpoint, note) = resolve(&function("BrokeredEndpoint", "a/b/c/d/")).unwrap();
        assert_eq!(
            endpoint,
            Endpoint::ModuleInput {
                module: "b".into(),
                input: "d".into()
            }
        );
        assert!(note.unwrap().contains("module 'b', input 'd'"));
    }

    #[test]
    fn brokered_endpoint_needs_four_segments() {
        for address in [
            "/modules/m/inputs",
            "/modules/m/inputs/i/x",
            "",
            "/modules//inputs/i",
        ] {
            let err = resolve(&function("BrokeredEndpoint", address)).unwrap_err();
            assert!(
                matches!(err, RouteErrorKind::BrokeredEndpointAddress { .. }),
                "{address}"
            );
        }
    }

    #[test]
    fn other_endpoint_functions_are_rejected() {
        let err = resolve(&function("EventHub", "/x")).unwrap_err();
        assert!(matches!(
            err,
            RouteErrorKind::UnsupportedFunctionEndpoint { .. }
        ));
    }

    #[test]
    fn upstream_id_is_iothub() {
        assert_eq!(Endpoint::Upstream.id("dev"), "iothub");
        assert_eq!(Endpoint::Upstream.to_string(), "$upstream");
    }
}
