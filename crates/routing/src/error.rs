//! Errors of parsing and compiling routes and conditions, with 1-based line and column.

use crate::types::Type;

/// A byte range in the route or condition text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end` (byte offsets).
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// Joins two spans into the smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    pub(crate) fn from_pest(span: pest::Span<'_>) -> Self {
        Self::new(span.start(), span.end())
    }
}

/// Why a route or condition was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteErrorKind {
    /// The text does not follow the grammar.
    #[error("expected {}, found {found}", list(expected))]
    Syntax {
        /// What the parser would have accepted here, in words.
        expected: Vec<String>,
        /// What it found instead.
        found: String,
    },
    /// A string literal has no closing quote or holds an escape other than `\"`, `\'`, `\\`, `\uXXXX`.
    #[error("unterminated string or invalid escape (allowed escapes: \\\" \\' \\\\ \\uXXXX)")]
    UnterminatedString,
    /// `WHERE` with nothing after it.
    #[error("expected a condition after WHERE")]
    EmptyCondition,
    /// The operands of an operator have types it does not accept.
    #[error(
        "operator '{operator}' cannot be applied to {}; {hint}",
        operand_types(operands)
    )]
    OperandTypes {
        /// The operator as written.
        operator: String,
        /// The static types of the operands.
        operands: Vec<Type>,
        /// What to write instead.
        hint: String,
    },
    /// A function name that is not one of the built-ins.
    #[error("unknown function '{name}'; built-in functions are {}", crate::functions::names().join(", "))]
    UnknownFunction {
        /// The name as written.
        name: String,
    },
    /// A built-in called with arguments it does not accept.
    #[error("{name}({}) is not valid: expected {expected}", operand_types(given))]
    FunctionArguments {
        /// The function name as written.
        name: String,
        /// Static types of the arguments given.
        given: Vec<Type>,
        /// The accepted signatures, in words.
        expected: String,
    },
    /// `twin_change_includes` used outside a `/twinChangeNotifications` route or with a bad path.
    #[error("{reason}")]
    TwinChangeIncludes {
        /// What is wrong.
        reason: String,
    },
    /// A `$body.` query outside the supported JSONPath subset.
    #[error("invalid $body query '{query}': {reason}")]
    BodyQuery {
        /// The query as written after `$body.`.
        query: String,
        /// What is wrong.
        reason: String,
    },
    /// A `$name` sink other than `$upstream`.
    #[error("system endpoint '{name}' is not supported; the only system endpoint is $upstream")]
    UnsupportedSystemEndpoint {
        /// The sink as written.
        name: String,
    },
    /// A `name("…")` sink other than `BrokeredEndpoint`.
    #[error(
        "endpoint function '{name}' is not supported; use BrokeredEndpoint(\"/modules/<module>/inputs/<input>\")"
    )]
    UnsupportedFunctionEndpoint {
        /// The function name as written.
        name: String,
    },
    /// A `BrokeredEndpoint` address that is not `/modules/<module>/inputs/<input>`.
    #[error("invalid BrokeredEndpoint address '{address}': {reason}")]
    BrokeredEndpointAddress {
        /// The address as written.
        address: String,
        /// What is wrong.
        reason: String,
    },
}

/// A route or condition that cannot be parsed or compiled: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct RouteError {
    /// 1-based line of the offending text.
    pub line: usize,
    /// 1-based column (in characters) of the offending text.
    pub column: usize,
    /// The offending byte range.
    pub span: Span,
    /// What is wrong.
    pub kind: RouteErrorKind,
}

impl RouteError {
    /// An error at `span` of `text`; line and column are computed from the span start.
    pub fn at(text: &str, span: Span, kind: RouteErrorKind) -> Self {
        let (line, column) = line_column(text, span.start);
        Self {
            line,
            column,
            span,
            kind,
        }
    }

    /// The error with a copy of the offending line and a caret under the position, for terminals.
    pub fn render(&self, text: &str) -> String {
        let line_text = text.lines().nth(self.line.saturating_sub(1)).unwrap_or("");
        let width = text.get(self.span.start..self.span.end).map_or(1, |s| {
            s.lines().next().map_or(1, |l| l.chars().count().max(1))
        });
        format!(
            "{self}\n  {line_text}\n  {}{}",
            " ".repeat(self.column.saturating_sub(1)),
            "^".repeat(width)
        )
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn list(items: &[String]) -> String {
    match items {
        [] => "something else".to_owned(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn operand_types(types: &[Type]) -> String {
    types
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("abc", 2), (1, 3));
        assert_eq!(line_column("ab\ncd", 3), (2, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é=x", 2), (1, 2));
        assert_eq!(line_column("abc", 99), (1, 4));
    }

    #[test]
    fn rendered_error_points_at_the_column() {
        let text = "FROM /a INTO upstream";
        let err = RouteError::at(
            text,
            Span::new(13, 21),
            RouteErrorKind::Syntax {
                expected: vec!["a sink".into()],
                found: "upstream".into(),
            },
        );
        let rendered = err.render(text);
        assert!(rendered.starts_with("line 1, column 14: expected a sink, found upstream"));
        assert!(rendered.ends_with(&format!("{}{}", " ".repeat(15), "^".repeat(8))));
    }
}
