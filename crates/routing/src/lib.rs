//! IoT Hub route and condition language: parser, type-checked compiler, evaluator, router.
//!
//! Implements `shared/reference/iotedge-runtime.md` §2 the way IoT Edge's edge hub does, so that
//! routes in real deployment manifests route exactly as they do on IoT Edge.
//!
//! ```
//! use std::sync::Arc;
//! use ironedge_routing::{compile, Endpoint, Message, RouteSpec, RouteTable, Truth};
//!
//! // One route: parse, type-check, evaluate.
//! let route = compile(
//!     r#"FROM /messages/modules/sensor/* WHERE as_number(temp) > 30 INTO BrokeredEndpoint("/modules/alert/inputs/in")"#,
//! )?;
//! let message = Message::new("/messages/modules/sensor/outputs/out").with_property("temp", "31");
//! assert!(route.matches(&message));
//! assert_eq!(route.endpoint(), &Endpoint::ModuleInput { module: "alert".into(), input: "in".into() });
//!
//! // Errors say where and what was expected.
//! let err = compile("FROM /messages/* WHERE temp > 30 INTO $upstream").unwrap_err();
//! assert_eq!((err.line, err.column), (1, 24));
//! assert!(err.to_string().contains("as_number"));
//!
//! // A route table: one delivery per endpoint, the lowest priority number winning.
//! let table: Arc<RouteTable> = RouteTable::compile([
//!     RouteSpec { name: "hot".into(), route: "FROM /messages/* WHERE $body.t > 30 INTO $upstream".into(), priority: 0, time_to_live_secs: 60 },
//!     RouteSpec::new("all", "FROM /messages/* INTO $upstream"),
//! ])?
//! .into_shared();
//! let hot = Message::new("/messages").with_json_body(r#"{"t": 35}"#);
//! let deliveries = table.route(&hot);
//! assert_eq!((deliveries.len(), deliveries[0].route, deliveries[0].time_to_live_secs), (1, "hot", 60));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Pipeline
//!
//! `grammar.pest` + a Pratt parser ([`parse_route`], [`parse_condition`]) give a syntax tree
//! with spans ([`RouteAst`], [`Expr`]) whose `Display` prints the canonical route. [`compile`]
//! type-checks it (static types: number, string, bool, null, undefined, and the dynamic type of
//! `$body` values) and lowers it to a compact tree that [`Condition::evaluate`] runs with
//! Kleene three-valued logic ([`Truth`]). Messages are read through [`RoutableMessage`], so the
//! edge hub routes its own message type without copying it; [`Message`] is an owned one (and
//! [`Message::from_json`] reads the CLI's Message JSON). A [`MessageContext`] parses a body at
//! most once per message however many routes query it. [`RouteTable`] is immutable: build a new
//! one for each `$edgeHub` update and swap an `Arc<RouteTable>`.
//!
//! Evaluation does not allocate except in functions that build strings (`concat`, `||`,
//! `lower`, `upper`, non-ASCII `substring`) and when a body is first parsed.
//!
//! # Decisions on the reference's quirks
//!
//! Each "Q:" of reference §2, and the other places where IoT Edge behaves surprisingly, is
//! decided here. The rule: behave like the edge hub, so a manifest routes the same on ironedge
//! as on IoT Edge, and tell the author through [`CompiledRoute::warnings`] when a route is
//! accepted but almost certainly does not do what they meant.
//!
//! | quirk | decision |
//! |---|---|
//! | `$correlationId` is always undefined on the edge (it stores `cid`) | kept; warning says to write `$cid` |
//! | `$componentName` is always undefined (the edge stores `dt-subject`) | kept; warning says to write `$dt-subject` |
//! | `$connectionAuthMethod`, `$connectionDeviceGenerationId` are set only by IoT Hub | always undefined; warning |
//! | `/messages/events` (IoT Hub's source) matches nothing on the edge | kept; warning suggests `/messages/*` |
//! | `BrokeredEndpoint` does not check segments 1 and 3 are `modules`, `inputs` | kept; warning names the module and input it read. Empty module or input names are rejected (stricter: they could never be delivered) |
//! | A `*` inside a source is not a wildcard; matching is a case-insensitive prefix test | kept |
//! | A missing `$body` path is `null`, not undefined | kept (`$body.missing = null` is true); a path through a number or string is also `null`; an object or array leaf is undefined |
//! | Strings JSON.NET reads as dates (`2017-03-09T00:00:00Z`) are undefined in body queries | kept, so date comparisons behave as on IoT Edge |
//! | `$body` needs `contentType` exactly `application/json` and `contentEncoding` utf-8/16/32 | kept (ASCII case-insensitive; parameters such as `; charset=utf-8` make it undefined) |
//! | An application property `$x` wins over the system property or body query `$x`; `{$x}` skips it | kept |
//! | Application properties are strings: `temp > 30` is a compile error | kept; the error suggests `as_number(temp)` or `$body.temp` |
//! | No implicit conversion: `$body.t = '50'` is false for a number | kept; for `$body` values a type mismatch is "not equal" (ordering is undefined); for a null property against a string it is undefined (`Null.cs`) |
//! | `null` rules of `Null.cs` (`null AND x` is null, `NOT null` is true, a condition `null` is false, `x / null` is ±∞) | kept |
//! | NaN is undefined (`3 % 0`), `3 / 0` is +∞ and defined, `is_number(3/0)` is false | kept |
//! | A condition that is not boolean (`3`, `'x'`) is undefined, never true | kept; warning |
//! | The lexer takes the longest identifier: `a+b`, `alert-level`, `3-4` are single property names | kept, so `alert-level = 'x'` means what it means on IoT Edge; write spaces around `+ - * % ||` |
//! | `true`, `false`, `null`, `undefined` are lower case only (`TRUE` is a property) | kept |
//! | `e5` lexes as a real literal .NET cannot parse (undefined); hex literals are 64-bit signed (`0xFFFFFFFFFFFFFFFF` is -1) | kept |
//! | `-undefined` compiles (undefined) though `3 + undefined` does not | kept |
//! | `NOT a = b` is `(NOT a) = b` (NOT binds tighter than comparisons) | kept; the canonical printer writes the parentheses |
//! | `/*` directly after `FROM` starts a comment if a `*/` follows somewhere | kept (it is how the reference lexer reads it) |
//! | `twin_change_includes` only in routes `FROM /twinChangeNotifications` | kept, with an error that says so; allowed in stand-alone conditions |
//! | Route complexity is unlimited | more than 128 nested parentheses or 2048 tokens are rejected, to bound the stack |
//! | `x +1`, `3 -1` (operator glued to the next operand) are syntax errors on IoT Edge | accepted as `x + 1`, `3 - 1`: accepting more never changes what an accepted route means |
//! | Property names match case-insensitively (.NET `OrdinalIgnoreCase`) | ASCII case only; string positions (`length`, `index_of`, `substring`) count UTF-16 units as in .NET; `<`/`>` on strings compare code points, which differs from .NET's UTF-16 order only between supplementary characters and U+E000–U+FFFF |
//! | Several routes to one endpoint | one delivery, from the lowest priority number; on a tie the first route in table order |

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
