//! A compiled route: source, condition and endpoint.

use crate::ast::RouteAst;
use crate::condition::Condition;
use crate::eval::MessageContext;
use crate::message::RoutableMessage;
use crate::sink::Endpoint;
use crate::source::Source;
use crate::value::Truth;
use crate::warning::Warning;

/// A parsed, type-checked route (see [`crate::compile`]).
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    text: String,
    ast: RouteAst,
    source: Source,
    condition: Condition,
    endpoint: Endpoint,
    warnings: Vec<Warning>,
}

/// How one route fared on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// Whether the message's source matched the route's source.
    pub source_matched: bool,
    /// The condition's value; [`Truth::Undefined`] when the source did not match (not evaluated).
    pub condition: Truth,
}

impl RouteMatch {
    /// True when the route is taken: the source matches and the condition is true.
    pub fn matched(&self) -> bool {
        self.source_matched && self.condition.is_true()
    }
}

impl CompiledRoute {
    pub(crate) fn new(
        text: String,
        ast: RouteAst,
        source: Source,
        condition: Condition,
        endpoint: Endpoint,
        warnings: Vec<Warning>,
    ) -> Self {
        Self {
            text,
            ast,
            source,
            condition,
            endpoint,
            warnings,
        }
    }

    /// The route text as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The syntax tree; its `Display` is the canonical route text.
    pub fn ast(&self) -> &RouteAst {
        &self.ast
    }

    /// The normalised source.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The condition (`true` when the route has no `WHERE`).
    pub fn condition(&self) -> &Condition {
        &self.condition
    }

    /// Where matching messages go.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Things accepted as IoT Edge accepts them but that are probably mistakes.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Evaluates the route on one message.
    pub fn evaluate<M: RoutableMessage + ?Sized>(&self, message: &M) -> RouteMatch {
        self.evaluate_in(&MessageContext::new(message))
    }

    /// Evaluates the route within a routing call, sharing the parsed body with other routes.
    pub fn evaluate_in<M: RoutableMessage + ?Sized>(
        &self,
        context: &MessageContext<'_, M>,
    ) -> RouteMatch {
        if !self.source.matches(context.message().source()) {
            return RouteMatch {
                source_matched: false,
                condition: Truth::Undefined,
            };
        }
        RouteMatch {
            source_matched: true,
            condition: self.condition.evaluate_in(context),
        }
    }

    /// True when the route is taken for this message.
    pub fn matches<M: RoutableMessage + ?Sized>(&self, message: &M) -> bool {
        self.evaluate(message).matched()
    }
}
