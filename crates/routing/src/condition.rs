//! A compiled condition: the `WHERE` clause of a route, or a condition on its own.

use crate::eval::{self, MessageContext, Node, Outcome};
use crate::message::RoutableMessage;
use crate::value::{Truth, Value};
use crate::warning::Warning;

/// A type-checked condition, ready to evaluate on messages.
#[derive(Debug, Clone)]
pub struct Condition {
    text: String,
    root: Node,
    outcome: Outcome,
    warnings: Vec<Warning>,
}

impl Condition {
    pub(crate) fn new(text: String, root: Node, outcome: Outcome, warnings: Vec<Warning>) -> Self {
        Self {
            text,
            root,
            outcome,
            warnings,
        }
    }

    /// The condition of a route without `WHERE`: `true`.
    pub fn always_true() -> Self {
        Self::new(
            "true".to_owned(),
            Node::Const(Value::Bool(true)),
            Outcome::Truth,
            Vec::new(),
        )
    }

    /// The condition text as written (in a route: the text between `WHERE` and `INTO`, trimmed).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Things in the condition that are accepted but probably not meant.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Evaluates the condition on one message.
    pub fn evaluate<M: RoutableMessage + ?Sized>(&self, message: &M) -> Truth {
        self.evaluate_in(&MessageContext::new(message))
    }

    /// Evaluates the condition within a routing call, sharing the parsed body with other routes.
    pub fn evaluate_in<M: RoutableMessage + ?Sized>(
        &self,
        context: &MessageContext<'_, M>,
    ) -> Truth {
        eval::evaluate(&self.root, self.outcome, context)
    }
}
