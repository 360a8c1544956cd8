//! Syntax trees of routes and conditions, with spans, and their canonical printing.
//!
//! `Display` prints a canonical form: keywords in upper case, one space around binary operators,
//! double-quoted strings, parentheses only where precedence needs them, no `SELECT *`. Parsing the
//! printed text gives back an equal tree (`PartialEq` ignores spans).

use std::fmt;

use crate::error::Span;

/// A parsed route: `FROM source [WHERE condition] INTO sink`.
#[derive(Debug, Clone)]
pub struct RouteAst {
    /// The source path as written, e.g. `/messages/modules/m/*`.
    pub source: String,
    /// Where the source is in the route text.
    pub source_span: Span,
    /// The condition, if the route has a `WHERE` clause.
    pub condition: Option<ConditionAst>,
    /// The sink.
    pub sink: SinkAst,
    /// Where the sink is in the route text.
    pub sink_span: Span,
}

/// A parsed condition and the raw text it was parsed from.
#[derive(Debug, Clone)]
pub struct ConditionAst {
    /// The expression tree.
    pub expr: Expr,
    /// The raw condition text (in a route: the text between `WHERE` and `INTO`).
    pub span: Span,
}

/// A sink as written.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkAst {
    /// `$name`, e.g. `$upstream`; holds the name with its `$`.
    System(String),
    /// `name("address")`, e.g. `BrokeredEndpoint("/modules/m/inputs/i")`.
    Function {
        /// The function name as written.
        name: String,
        /// The address string, unescaped.
        address: String,
    },
}

/// An expression with the span of text it came from.
#[derive(Debug, Clone)]
pub struct Expr {
    /// What the expression is.
    pub kind: ExprKind,
    /// Where it is in the text.
    pub span: Span,
}

/// The kinds of expressions.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A literal value.
    Literal(Literal),
    /// A bare name: an application property.
    Property(String),
    /// `$name` (with its `$`): an application property of that name, else a body query or a system property.
    SystemProperty(String),
    /// `{$name}` (with its `$`): a body query or a system property, never an application property.
    EscapedSystemProperty(String),
    /// A built-in function call.
    Call {
        /// The function name as written.
        name: String,
        /// The arguments.
        args: Vec<Expr>,
    },
    /// A unary operation.
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        operand: Box<Expr>,
    },
    /// A binary operation.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
}

/// Literal values.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A number as written (decimal, real with exponent, or `0x` hex); compiled to a double.
    Number(String),
    /// A string, unescaped.
    String(String),
    /// `true`.
    True,
    /// `false`.
    False,
    /// `null`.
    Null,
    /// `undefined`.
    Undefined,
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-x`.
    Negate,
    /// `NOT x`.
    Not,
}

/// Binary operators, from `Condition.g4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `||` (string concatenation)
    Concat,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<>` (same as `!=`; kept apart so printing keeps the author's spelling)
    NeSql,
    /// `AND`
    And,
    /// `OR`
    Or,
    /// `??` (coalesce)
    Coalesce,
}

/// Precedence of unary operators and primaries (higher binds tighter).
pub(crate) const UNARY_PRECEDENCE: u8 = 8;
const PRIMARY_PRECEDENCE: u8 = 9;

impl BinaryOp {
    /// Binding strength, from reference §2.7: higher binds tighter.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => 7,
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Concat => 6,
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => 5,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::NeSql => 4,
            BinaryOp::And => 3,
            BinaryOp::Or => 2,
            BinaryOp::Coalesce => 1,
        }
    }

    /// The operator's text.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Concat => "||",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Eq => "=",
            BinaryOp::Ne => "!=",
            BinaryOp::NeSql => "<>",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
            BinaryOp::Coalesce => "??",
        }
    }
}

impl UnaryOp {
    /// The operator's text.
    pub fn symbol(self) -> &'static str {
        match self {
            UnaryOp::Negate => "-",
            UnaryOp::Not => "NOT",
        }
    }
}

/// Equality is structural: spans are ignored.
impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

/// Equality is structural: spans are ignored.
impl PartialEq for ConditionAst {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

/// Equality is structural: spans are ignored.
impl PartialEq for RouteAst {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.sink == other.sink && self.condition == other.condition
    }
}

impl Expr {
    fn precedence(&self) -> u8 {
        match &self.kind {
            ExprKind::Binary { op, .. } => op.precedence(),
            ExprKind::Unary { .. } => UNARY_PRECEDENCE,
            _ => PRIMARY_PRECEDENCE,
        }
    }
}

fn write_operand(f: &mut fmt::Formatter<'_>, expr: &Expr, min_precedence: u8) -> fmt::Result {
    write_operand_of(f, expr, min_precedence, None)
}

/// Writes an operand of `parent`, adding parentheses where precedence needs them.
fn write_operand_of(
    f: &mut fmt::Formatter<'_>,
    expr: &Expr,
    min_precedence: u8,
    parent: Option<BinaryOp>,
) -> fmt::Result {
    // `NOT a = b` means `(NOT a) = b`; parentheses make that surprising precedence visible.
    let surprising_not = parent.is_some_and(|op| op.precedence() > BinaryOp::And.precedence())
        && matches!(
            expr.kind,
            ExprKind::Unary {
                op: UnaryOp::Not,
                ..
            }
        );
    if expr.precedence() < min_precedence || surprising_not {
        write!(f, "({expr})")
    } else {
        write!(f, "{expr}")
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Literal(literal) => write!(f, "{literal}"),
            ExprKind::Property(name) | ExprKind::SystemProperty(name) => f.write_str(name),
            ExprKind::EscapedSystemProperty(name) => write!(f, "{{{name}}}"),
            ExprKind::Call { name, args } => {
                write!(f, "{name}(")?;
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{arg}")?;
                }
                f.write_str(")")
            }
            // A space after the operator keeps `- x` apart from the name `-x` and `- 1` from `-1`.
            ExprKind::Unary { op, operand } => {
                write!(f, "{} ", op.symbol())?;
                write_operand(f, operand, UNARY_PRECEDENCE)
            }
            ExprKind::Binary { op, lhs, rhs } => {
                write_operand_of(f, lhs, op.precedence(), Some(*op))?;
                write!(f, " {} ", op.symbol())?;
                // Left associative: a right operand of equal precedence needs parentheses.
                write_operand_of(f, rhs, op.precedence() + 1, Some(*op))
            }
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Number(text) => f.write_str(text),
            Literal::String(value) => write_quoted(f, value),
            Literal::True => f.write_str("true"),
            Literal::False => f.write_str("false"),
            Literal::Null => f.write_str("null"),
            Literal::Undefined => f.write_str("undefined"),
        }
    }
}

/// Writes `value` as a double-quoted string literal.
pub(crate) fn write_quoted(f: &mut impl fmt::Write, value: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in value.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl fmt::Display for SinkAst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkAst::System(name) => f.write_str(name),
            SinkAst::Function { name, address } => {
                write!(f, "{name}(")?;
                write_quoted(f, address)?;
                f.write_str(")")
            }
        }
    }
}

impl fmt::Display for ConditionAst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)
    }
}

impl fmt::Display for RouteAst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FROM {}", self.source)?;
        if let Some(condition) = &self.condition {
            write!(f, " WHERE {condition}")?;
        }
        write!(f, " INTO {}", self.sink)
    }
}
