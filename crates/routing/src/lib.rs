//! IoT Hub route and condition language: parser, type-checked compiler, evaluator, router.
//!
//! Implements `reference/iotedge-runtime.md` §2 as IoT Edge's edge hub does.
//!
//! ```
//! use ironedge_routing::{compile, Endpoint, Message};
//!
//! let route = compile(
//!     "FROM /messages/modules/sensor/* WHERE as_number(temp) > 30 INTO BrokeredEndpoint(\"/modules/alert/inputs/in\")",
//! )?;
//! let message = Message::new("/messages/modules/sensor/outputs/out").with_property("temp", "31");
//! assert!(route.matches(&message));
//! assert_eq!(route.endpoint(), &Endpoint::ModuleInput { module: "alert".into(), input: "in".into() });
//! # Ok::<(), ironedge_routing::RouteError>(())
//! ```

mod ast;
mod body;
mod compile;
mod condition;
mod error;
mod eval;
mod functions;
mod json;
mod message;
pub mod message_json;
mod parse;
mod route;
mod router;
mod sink;
mod source;
mod types;
mod value;
mod warning;

pub use ast::{BinaryOp, ConditionAst, Expr, ExprKind, Literal, RouteAst, SinkAst, UnaryOp};
pub use compile::{compile, compile_condition};
pub use condition::Condition;
pub use error::{RouteError, RouteErrorKind, Span, line_column};
pub use eval::MessageContext;
pub use message::{Message, PropertyValue, RoutableMessage, SystemProperty};
pub use message_json::MessageJsonError;
pub use parse::{parse_condition, parse_route};
pub use route::{CompiledRoute, RouteMatch};
pub use router::{DEFAULT_PRIORITY, Delivery, RouteEntry, RouteSpec, RouteTable, RouteTableError};
pub use sink::{Endpoint, UPSTREAM_ENDPOINT_ID};
pub use source::{Source, TWIN_CHANGE_NOTIFICATIONS, message_source, source_for};
pub use types::Type;
pub use value::Truth;
pub use warning::Warning;
