//! Warnings: routes the edge accepts but that probably do not do what their author meant.

use std::fmt;

use crate::error::{Span, line_column};

/// Something accepted as IoT Edge accepts it, but worth telling the author about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// The text concerned.
    pub span: Span,
    /// What looks wrong and what to write instead.
    pub message: String,
}

impl Warning {
    pub(crate) fn at(text: &str, span: Span, message: String) -> Self {
        let (line, column) = line_column(text, span.start);
        Self {
            line,
            column,
            span,
            message,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}
