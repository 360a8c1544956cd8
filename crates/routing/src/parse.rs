//! Parsing route and condition text into syntax trees (`grammar.pest` + a Pratt parser).

use std::sync::LazyLock;

use pest::Parser as _;
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};

use crate::ast::{BinaryOp, ConditionAst, Expr, ExprKind, Literal, RouteAst, SinkAst, UnaryOp};
use crate::error::{RouteError, RouteErrorKind, Span};

#[derive(pest_derive::Parser)]
#[grammar = "grammar.pest"]
struct Grammar;

/// Operator precedence from reference §2.7, lowest first.
static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::op_coalesce, Assoc::Left))
        .op(Op::infix(Rule::kw_or, Assoc::Left))
        .op(Op::infix(Rule::kw_and, Assoc::Left))
        .op(Op::infix(Rule::op_eq, Assoc::Left)
            | Op::infix(Rule::op_ne, Assoc::Left)
            | Op::infix(Rule::op_ne_sql, Assoc::Left))
        .op(Op::infix(Rule::op_lt, Assoc::Left)
            | Op::infix(Rule::op_le, Assoc::Left)
            | Op::infix(Rule::op_gt, Assoc::Left)
            | Op::infix(Rule::op_ge, Assoc::Left))
        .op(Op::infix(Rule::op_add, Assoc::Left)
            | Op::infix(Rule::op_sub, Assoc::Left)
            | Op::infix(Rule::op_concat, Assoc::Left))
        .op(Op::infix(Rule::op_mul, Assoc::Left)
            | Op::infix(Rule::op_div, Assoc::Left)
            | Op::infix(Rule::op_mod, Assoc::Left))
        .op(Op::prefix(Rule::neg) | Op::prefix(Rule::kw_not))
});

/// Parentheses nested deeper than this are rejected rather than risking the stack.
const MAX_DEPTH: usize = 128;
/// Expressions with more tokens than this are rejected rather than risking the stack.
const MAX_NODES: usize = 2048;

/// Parses a whole route (`[SELECT *] FROM … [WHERE …] INTO …`).
pub fn parse_route(text: &str) -> Result<RouteAst, RouteError> {
    check_depth(text)?;
    let mut pairs = Grammar::parse(Rule::route, text).map_err(|e| syntax_error(text, &e))?;
    check_size(text, &pairs)?;
    let route = pairs.next().map(Pair::into_inner);
    let mut source = None;
    let mut condition = None;
    let mut sink = None;
    for pair in route.into_iter().flatten() {
        match pair.as_rule() {
            Rule::source => {
                source = Some((pair.as_str().to_owned(), Span::from_pest(pair.as_span())))
            }
            Rule::condition => {
                let span = Span::from_pest(pair.as_span());
                let expr = pair.into_inner().next().ok_or_else(|| internal(text))?;
                let expr = build_expr(text, expr.into_inner())?;
                condition = Some(ConditionAst { expr, span });
            }
            Rule::sink => sink = Some(build_sink(text, pair)?),
            _ => {}
        }
    }
    match (source, sink) {
        (Some((source, source_span)), Some((sink, sink_span))) => Ok(RouteAst {
            source,
            source_span,
            condition,
            sink,
            sink_span,
        }),
        _ => Err(internal(text)),
    }
}

/// Parses a condition on its own; `None` when the text is empty (only blanks or comments).
pub fn parse_condition(text: &str) -> Result<Option<ConditionAst>, RouteError> {
    check_depth(text)?;
    let mut pairs =
        Grammar::parse(Rule::condition_only, text).map_err(|e| syntax_error(text, &e))?;
    check_size(text, &pairs)?;
    let Some(expr) = pairs
        .next()
        .and_then(|p| p.into_inner().find(|p| p.as_rule() == Rule::expr))
    else {
        return Ok(None);
    };
    let span = Span::from_pest(expr.as_span());
    let expr = build_expr(text, expr.into_inner())?;
    Ok(Some(ConditionAst { expr, span }))
}

fn build_sink(text: &str, pair: Pair<'_, Rule>) -> Result<(SinkAst, Span), RouteError> {
    let span = Span::from_pest(pair.as_span());
    let inner = pair.into_inner().next().ok_or_else(|| internal(text))?;
    match inner.as_rule() {
        Rule::system_endpoint => Ok((SinkAst::System(inner.as_str().to_owned()), span)),
        Rule::function_endpoint => {
            let mut parts = inner.into_inner();
            let name = parts
                .next()
                .ok_or_else(|| internal(text))?
                .as_str()
                .to_owned();
            let address = parts.next().ok_or_else(|| internal(text))?;
            let address = unescape(address.as_str());
            Ok((SinkAst::Function { name, address }, span))
        }
        _ => Err(internal(text)),
    }
}

fn build_expr(text: &str, pairs: Pairs<'_, Rule>) -> Result<Expr, RouteError> {
    PRATT
        .map_primary(|primary| build_primary(text, primary))
        .map_prefix(|op, operand| {
            let operand = operand?;
            let span = Span::from_pest(op.as_span()).to(operand.span);
            let op = if op.as_rule() == Rule::neg {
                UnaryOp::Negate
            } else {
                UnaryOp::Not
            };
            Ok(Expr {
                kind: ExprKind::Unary {
                    op,
                    operand: Box::new(operand),
                },
                span,
            })
        })
        .map_infix(|lhs, op, rhs| {
            let (lhs, rhs) = (lhs?, rhs?);
            let op = binary_op(op.as_rule()).ok_or_else(|| internal(text))?;
            let span = lhs.span.to(rhs.span);
            Ok(Expr {
                kind: ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
                span,
            })
        })
        .parse(pairs)
}

fn binary_op(rule: Rule) -> Option<BinaryOp> {
    Some(match rule {
        Rule::op_mul => BinaryOp::Mul,
        Rule::op_div => BinaryOp::Div,
        Rule::op_mod => BinaryOp::Mod,
        Rule::op_add => BinaryOp::Add,
        Rule::op_sub => BinaryOp::Sub,
        Rule::op_concat => BinaryOp::Concat,
        Rule::op_lt => BinaryOp::Lt,
        Rule::op_le => BinaryOp::Le,
        Rule::op_gt => BinaryOp::Gt,
        Rule::op_ge => BinaryOp::Ge,
        Rule::op_eq => BinaryOp::Eq,
        Rule::op_ne => BinaryOp::Ne,
        Rule::op_ne_sql => BinaryOp::NeSql,
        Rule::kw_and => BinaryOp::And,
        Rule::kw_or => BinaryOp::Or,
        Rule::op_coalesce => BinaryOp::Coalesce,
        _ => return None,
    })
}

fn build_primary(text: &str, pair: Pair<'_, Rule>) -> Result<Expr, RouteError> {
    let span = Span::from_pest(pair.as_span());
    let kind = match pair.as_rule() {
        Rule::paren => {
            let inner = pair.into_inner().next().ok_or_else(|| internal(text))?;
            return build_expr(text, inner.into_inner());
        }
        Rule::lit_true => ExprKind::Literal(Literal::True),
        Rule::lit_false => ExprKind::Literal(Literal::False),
        Rule::lit_null => ExprKind::Literal(Literal::Null),
        Rule::lit_undefined => ExprKind::Literal(Literal::Undefined),
        Rule::hex | Rule::real | Rule::integer => {
            ExprKind::Literal(Literal::Number(pair.as_str().to_owned()))
        }
        Rule::double_quoted | Rule::single_quoted => {
            ExprKind::Literal(Literal::String(unescape(pair.as_str())))
        }
        Rule::property => ExprKind::Property(pair.as_str().to_owned()),
        Rule::system_property => ExprKind::SystemProperty(pair.as_str().to_owned()),
        Rule::escaped_property => {
            let inner = pair.into_inner().next().ok_or_else(|| internal(text))?;
            ExprKind::EscapedSystemProperty(inner.as_str().to_owned())
        }
        Rule::call => {
            let mut inner = pair.into_inner();
            let name = inner
                .next()
                .ok_or_else(|| internal(text))?
                .as_str()
                .to_owned();
            let args = inner
                .map(|arg| build_expr(text, arg.into_inner()))
                .collect::<Result<Vec<_>, _>>()?;
            ExprKind::Call { name, args }
        }
        Rule::unterminated_string => {
            return Err(RouteError::at(
                text,
                span,
                RouteErrorKind::UnterminatedString,
            ));
        }
        _ => return Err(internal(text)),
    };
    Ok(Expr { kind, span })
}

/// Strips the quotes of a string token and resolves `\"`, `\'`, `\\` and `\uXXXX`.
fn unescape(token: &str) -> String {
    let inner = token.get(1..token.len().saturating_sub(1)).unwrap_or("");
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    let mut pending_high: Option<u16> = None;
    while let Some(c) = chars.next() {
        if c != '\\' {
            flush_surrogate(&mut out, &mut pending_high);
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let unit = u16::from_str_radix(&hex, 16).unwrap_or(0xFFFD);
                push_utf16_unit(&mut out, &mut pending_high, unit);
            }
            Some(other) => {
                flush_surrogate(&mut out, &mut pending_high);
                out.push(other);
            }
            None => {}
        }
    }
    flush_surrogate(&mut out, &mut pending_high);
    out
}

/// `\uXXXX` escapes are UTF-16 code units: pairs of surrogates combine, lone ones become U+FFFD.
fn push_utf16_unit(out: &mut String, pending_high: &mut Option<u16>, unit: u16) {
    match (pending_high.take(), unit) {
        (Some(high), 0xDC00..=0xDFFF) => {
            let decoded = char::decode_utf16([high, unit]).next();
            out.push(
                decoded
                    .and_then(Result::ok)
                    .unwrap_or(char::REPLACEMENT_CHARACTER),
            );
        }
        (previous, 0xD800..=0xDBFF) => {
            if previous.is_some() {
                out.push(char::REPLACEMENT_CHARACTER);
            }
            *pending_high = Some(unit);
        }
        (previous, _) => {
            if previous.is_some() {
                out.push(char::REPLACEMENT_CHARACTER);
            }
            out.push(char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER));
        }
    }
}

fn flush_surrogate(out: &mut String, pending_high: &mut Option<u16>) {
    if pending_high.take().is_some() {
        out.push(char::REPLACEMENT_CHARACTER);
    }
}

/// Rejects parentheses nested deeper than [`MAX_DEPTH`] before pest recurses into them.
fn check_depth(text: &str) -> Result<(), RouteError> {
    let mut depth = 0usize;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'(' | b'{' => depth += 1,
            b')' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_DEPTH {
            return Err(too_complex(text, Span::new(i, i + 1)));
        }
    }
    Ok(())
}

/// Rejects expressions with more than [`MAX_NODES`] tokens, which bounds the depth of the
/// syntax tree that compiling, evaluating and printing walk recursively.
fn check_size(text: &str, pairs: &Pairs<'_, Rule>) -> Result<(), RouteError> {
    if pairs.clone().flatten().count() > MAX_NODES {
        return Err(too_complex(text, Span::new(0, text.len())));
    }
    Ok(())
}

fn too_complex(text: &str, span: Span) -> RouteError {
    RouteError::at(
        text,
        span,
        RouteErrorKind::Syntax {
            expected: vec![format!(
                "at most {MAX_DEPTH} nested parentheses and {MAX_NODES} tokens"
            )],
            found: "a longer expression".to_owned(),
        },
    )
}

fn internal(text: &str) -> RouteError {
    // The grammar guarantees the shapes matched above; reaching here is a bug, not bad input.
    RouteError::at(
        text,
        Span::new(0, text.len()),
        RouteErrorKind::Syntax {
            expected: vec!["a route".to_owned()],
            found: "an unexpected shape".to_owned(),
        },
    )
}

fn syntax_error(text: &str, err: &pest::error::Error<Rule>) -> RouteError {
    if let Some(span) = find_unterminated_string(text) {
        return RouteError::at(text, span, RouteErrorKind::UnterminatedString);
    }
    let start = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let (expected, span) = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut names: Vec<String> = Vec::new();
            for rule in positives {
                if let Some(name) = rule_name(*rule)
                    && !names.iter().any(|n| n == name)
                {
                    names.push(name.to_owned());
                }
            }
            (names, Span::new(start, start + found_len(text, start)))
        }
        ErrorVariant::CustomError { message } => (vec![message.clone()], Span::new(start, start)),
    };
    let found = describe_found(text, start);
    let expected = if expected.is_empty() {
        vec!["end of input".to_owned()]
    } else {
        expected
    };
    RouteError::at(text, span, RouteErrorKind::Syntax { expected, found })
}

/// The first string literal that is never closed or holds an invalid escape, if any.
///
/// Pest reports such a string as a failure much later (usually "expected INTO" at the end of
/// the text); pointing at the opening quote is what the user needs.
fn find_unterminated_string(text: &str) -> Option<Span> {
    let mut chars = text.char_indices().peekable();
    let mut previous: Option<char> = None;
    while let Some((start, c)) = chars.next() {
        // A `'` inside a name (`don't`) does not open a string.
        let opens = c == '"' || (c == '\'' && !previous.is_some_and(is_id_char));
        previous = Some(c);
        if text[start..].starts_with("/*") {
            // Skip comments: quotes inside them are not strings.
            match text[start + 2..].find("*/") {
                Some(end) => {
                    let resume = start + 2 + end + 2;
                    while chars.peek().is_some_and(|(i, _)| *i < resume) {
                        chars.next();
                    }
                    previous = Some('/');
                    continue;
                }
                None => return None,
            }
        }
        if !opens {
            continue;
        }
        loop {
            match chars.next() {
                None => return Some(Span::new(start, text.len())),
                Some((_, '\\')) => match chars.next() {
                    Some((_, '"' | '\'' | '\\')) => {}
                    Some((_, 'u')) => {
                        for _ in 0..4 {
                            if !chars.next().is_some_and(|(_, h)| h.is_ascii_hexdigit()) {
                                return Some(Span::new(start, text.len()));
                            }
                        }
                    }
                    _ => return Some(Span::new(start, text.len())),
                },
                Some((_, q)) if q == c => break,
                Some(_) => {}
            }
        }
        previous = Some(c);
    }
    None
}

/// `GrammarLexer.g4` ID_CHARS.
fn is_id_char(c: char) -> bool {
    !matches!(
        c,
        '(' | ')'
            | '<'
            | '>'
            | '@'
            | ','
            | ';'
            | ':'
            | '\\'
            | '"'
            | '/'
            | '['
            | ']'
            | '?'
            | '='
            | '{'
            | '}'
            | ' '
            | '\t'
            | '\n'
            | '\r'
    )
}

/// Friendly names for the tokens pest reports as expected.
fn rule_name(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::route => "a route: [SELECT *] FROM <source> [WHERE <condition>] INTO <sink>",
        Rule::condition_only => "a condition",
        Rule::kw_select => "SELECT",
        Rule::kw_from => "FROM",
        Rule::kw_where => "WHERE",
        Rule::kw_into => "INTO",
        Rule::kw_and
        | Rule::kw_or
        | Rule::op_coalesce
        | Rule::op_ne
        | Rule::op_ne_sql
        | Rule::op_le
        | Rule::op_ge
        | Rule::op_lt
        | Rule::op_gt
        | Rule::op_eq
        | Rule::op_concat
        | Rule::op_add
        | Rule::op_sub
        | Rule::op_mul
        | Rule::op_div
        | Rule::op_mod => "an operator",
        Rule::star => "'*'",
        Rule::source => "a source path such as /messages/*",
        Rule::condition | Rule::expr => "a condition",
        Rule::sink | Rule::system_endpoint | Rule::function_endpoint => {
            "a sink ($upstream or BrokeredEndpoint(\"/modules/<module>/inputs/<input>\"))"
        }
        Rule::function_name => "a function name",
        Rule::neg
        | Rule::kw_not
        | Rule::paren
        | Rule::lit_true
        | Rule::lit_false
        | Rule::lit_null
        | Rule::lit_undefined
        | Rule::hex
        | Rule::real
        | Rule::integer
        | Rule::double_quoted
        | Rule::single_quoted
        | Rule::property
        | Rule::system_property
        | Rule::escaped_property
        | Rule::call
        | Rule::unterminated_string => "a value",
        Rule::EOI => "end of input",
        _ => return None,
    })
}

fn found_len(text: &str, start: usize) -> usize {
    text.get(start..)
        .and_then(|rest| rest.split_whitespace().next())
        .map_or(0, str::len)
}

fn describe_found(text: &str, start: usize) -> String {
    match text
        .get(start..)
        .and_then(|rest| rest.split_whitespace().next())
    {
        None => "end of input".to_owned(),
        Some(word) => {
            let word: String = word.chars().take(40).collect();
            format!("'{word}'")
        }
    }
}
