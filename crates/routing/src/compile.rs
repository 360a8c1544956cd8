//! Type-checked compilation of syntax trees into evaluable routes and conditions (reference §2.5–2.8).

use crate::ast::{BinaryOp, ConditionAst, Expr, ExprKind, Literal, UnaryOp};
use crate::body::BodyPath;
use crate::condition::Condition;
use crate::error::{RouteError, RouteErrorKind, Span};
use crate::eval::{Arith, Compare, Node, Outcome, SystemKey};
use crate::functions::{Function, Math, StringTest, TypeTest};
use crate::message::SystemProperty;
use crate::parse;
use crate::route::CompiledRoute;
use crate::sink;
use crate::source::Source;
use crate::types::Type;
use crate::value::Value;
use crate::warning::Warning;

/// Parses and compiles a route: `[SELECT *] FROM <source> [WHERE <condition>] INTO <sink>`.
///
/// Errors carry the 1-based line and column and say what was expected. Routes IoT Edge accepts
/// but that look like mistakes compile with [`CompiledRoute::warnings`].
pub fn compile(route_text: &str) -> Result<CompiledRoute, RouteError> {
    let ast = parse::parse_route(route_text)?;
    let source = Source::new(&ast.source);
    let mut compiler = Compiler::new(route_text, Some(source.is_twin_change_notifications()));
    if source.is_hub_only() {
        compiler.warn(
            ast.source_span,
            format!(
                "source '{}' matches nothing on IoT Edge (it is an IoT Hub source); use /messages/* for all telemetry",
                ast.source
            ),
        );
    }
    let condition = match &ast.condition {
        None => Condition::always_true(),
        Some(condition) => {
            let text = route_text
                .get(condition.span.start..condition.span.end)
                .unwrap_or("");
            compiler.condition(condition, text.trim())?
        }
    };
    let (endpoint, note) =
        sink::resolve(&ast.sink).map_err(|kind| RouteError::at(route_text, ast.sink_span, kind))?;
    if let Some(note) = note {
        compiler.warn(ast.sink_span, note);
    }
    let warnings = compiler.warnings;
    Ok(CompiledRoute::new(
        route_text.to_owned(),
        ast,
        source,
        condition,
        endpoint,
        warnings,
    ))
}

/// Parses and compiles a condition on its own. An empty condition evaluates to undefined, as on
/// IoT Edge; `twin_change_includes` is allowed since there is no source to check it against.
pub fn compile_condition(text: &str) -> Result<Condition, RouteError> {
    match parse::parse_condition(text)? {
        None => Ok(Condition::new(
            text.to_owned(),
            Node::Const(Value::Undefined),
            Outcome::Undefined,
            Vec::new(),
        )),
        Some(ast) => {
            let mut compiler = Compiler::new(text, None);
            let condition = compiler.condition(&ast, text.trim())?;
            Ok(condition)
        }
    }
}

/// System properties IoT Hub sets but the edge never does, and what to use instead.
const HUB_ONLY: [(&str, &str); 4] = [
    (
        "correlationId",
        "on IoT Edge the correlation id is $cid; $correlationId is always undefined",
    ),
    (
        "componentName",
        "on IoT Edge the component name is $dt-subject; $componentName is always undefined",
    ),
    (
        "connectionAuthMethod",
        "$connectionAuthMethod is set only by IoT Hub and is always undefined on IoT Edge",
    ),
    (
        "connectionDeviceGenerationId",
        "$connectionDeviceGenerationId is set only by IoT Hub and is always undefined on IoT Edge",
    ),
];

struct Compiler<'t> {
    text: &'t str,
    /// Whether the route's source is `/twinChangeNotifications`; `None` outside a route.
    twin_source: Option<bool>,
    warnings: Vec<Warning>,
}

type Typed = (Node, Type);

impl<'t> Compiler<'t> {
    fn new(text: &'t str, twin_source: Option<bool>) -> Self {
        Self {
            text,
            twin_source,
            warnings: Vec::new(),
        }
    }

    fn warn(&mut self, span: Span, message: String) {
        self.warnings.push(Warning::at(self.text, span, message));
    }

    fn error(&self, span: Span, kind: RouteErrorKind) -> RouteError {
        RouteError::at(self.text, span, kind)
    }

    fn condition(&mut self, ast: &ConditionAst, raw: &str) -> Result<Condition, RouteError> {
        let (node, ty) = self.expr(&ast.expr)?;
        let outcome = match ty {
            Type::Bool | Type::Dynamic => Outcome::Truth,
            Type::Null => Outcome::False,
            Type::Number | Type::String | Type::Undefined => {
                self.warn(
                    ast.span,
                    format!("the condition is a {ty}, not a boolean, so it is never true"),
                );
                Outcome::Undefined
            }
        };
        // The condition keeps its own copy of the warnings; the route keeps the full list.
        Ok(Condition::new(
            raw.to_owned(),
            node,
            outcome,
            self.warnings.clone(),
        ))
    }

    fn expr(&mut self, e: &Expr) -> Result<Typed, RouteError> {
        match &e.kind {
            ExprKind::Literal(literal) => Ok(literal_node(literal)),
            ExprKind::Property(name) => {
                self.check_bare_name(name, e.span);
                Ok((Node::AppProperty(name.as_str().into()), Type::String))
            }
            ExprKind::SystemProperty(raw) => self.system_property(raw, e.span, false),
            ExprKind::EscapedSystemProperty(raw) => self.system_property(raw, e.span, true),
            ExprKind::Call { name, args } => self.call(name, args, e.span),
            ExprKind::Unary { op, operand } => self.unary(*op, operand, e.span),
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, e.span),
        }
    }

    fn check_bare_name(&mut self, name: &str, span: Span) {
        if SystemProperty::known(name).is_some() {
            self.warn(
                span,
                format!(
                    "'{name}' is an application property; for the system property write ${name}"
                ),
            );
        }
    }

    fn system_property(
        &mut self,
        raw: &str,
        span: Span,
        escaped: bool,
    ) -> Result<Typed, RouteError> {
        let name = raw.strip_prefix('$').unwrap_or(raw);
        let has_brackets = name.contains('[') || name.contains(']');
        if let Some(query) = strip_prefix_ignore_case(name, "body.") {
            let path = BodyPath::parse(query).map_err(|reason| {
                self.error(
                    span,
                    RouteErrorKind::BodyQuery {
                        query: query.to_owned(),
                        reason,
                    },
                )
            })?;
            // Application property names cannot hold brackets, so only the body is asked.
            let node = if escaped || has_brackets {
                Node::Body(path)
            } else {
                Node::AppOrBody(raw.into(), path)
            };
            return Ok((node, Type::Dynamic));
        }
        if has_brackets {
            self.warn(
                span,
                format!("'{raw}' is always undefined: only $body. queries may use [index]"),
            );
            return Ok((Node::Const(Value::Undefined), Type::Undefined));
        }
        let key = self.system_key(name, span);
        let node = if escaped {
            Node::System(key)
        } else {
            Node::AppOrSystem(raw.into(), key)
        };
        Ok((node, Type::String))
    }

    fn system_key(&mut self, name: &str, span: Span) -> SystemKey {
        if let Some((_, message)) = HUB_ONLY.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            self.warn(span, (*message).to_owned());
            return SystemKey::Never;
        }
        match SystemProperty::known(name) {
            Some(known) => SystemKey::Known(known),
            None => {
                let other = name;
                self.warn(
                    span,
                    format!(
                        "'${other}' is not a system property the edge hub sets; it is undefined unless \
                         the message has an application property named '${other}'"
                    ),
                );
                SystemKey::Other(other.into())
            }
        }
    }

    fn call(&mut self, name: &str, args: &[Expr], span: Span) -> Result<Typed, RouteError> {
        let name_span = Span::new(span.start, span.start + name.len());
        let function = Function::from_name(name).ok_or_else(|| {
            self.error(
                name_span,
                RouteErrorKind::UnknownFunction {
                    name: name.to_owned(),
                },
            )
        })?;
        if function == Function::TwinChangeIncludes {
            return self.twin_change_includes(args, span);
        }
        let mut nodes = Vec::with_capacity(args.len());
        let mut types = Vec::with_capacity(args.len());
        for arg in args {
            let (node, ty) = self.expr(arg)?;
            nodes.push(node);
            types.push(ty);
        }
        let result = function.result_type(&types).ok_or_else(|| {
            self.error(
                span,
                RouteErrorKind::FunctionArguments {
                    name: name.to_owned(),
                    given: types.clone(),
                    expected: function.signature().to_owned(),
                },
            )
        })?;
        Ok((build_call(function, nodes), result))
    }

    fn twin_change_includes(&mut self, args: &[Expr], span: Span) -> Result<Typed, RouteError> {
        let fail = |reason: &str| {
            RouteError::at(
                self.text,
                span,
                RouteErrorKind::TwinChangeIncludes {
                    reason: reason.to_owned(),
                },
            )
        };
        if self.twin_source == Some(false) {
            return Err(fail(
                "twin_change_includes can only be used in routes FROM /twinChangeNotifications",
            ));
        }
        let [
            Expr {
                kind: ExprKind::Property(path),
                ..
            },
        ] = args
        else {
            return Err(fail(
                "twin_change_includes takes one twin path, e.g. twin_change_includes(properties.reported.temperature)",
            ));
        };
        let supported = ["properties.reported.", "properties.desired.", "tags."];
        if !supported
            .iter()
            .any(|p| strip_prefix_ignore_case(path, p).is_some())
        {
            return Err(fail(&format!(
                "'{path}' is not supported; the path must start with properties.reported., properties.desired. or tags."
            )));
        }
        let parsed = BodyPath::parse(path)
            .map_err(|reason| fail(&format!("invalid path '{path}': {reason}")))?;
        Ok((Node::TwinChangeIncludes(parsed), Type::Bool))
    }

    fn unary(&mut self, op: UnaryOp, operand: &Expr, span: Span) -> Result<Typed, RouteError> {
        let (node, ty) = self.expr(operand)?;
        match (op, ty) {
            (UnaryOp::Negate, Type::Number | Type::Dynamic) => {
                Ok((Node::Negate(Box::new(node)), ty))
            }
            // `-undefined` compiles and stays undefined (ConditionCompilerTest).
            (UnaryOp::Negate, Type::Undefined) => {
                Ok((Node::Const(Value::Undefined), Type::Undefined))
            }
            // NOT null is true (Null.cs).
            (UnaryOp::Not, Type::Null) => Ok((Node::Const(Value::Bool(true)), Type::Bool)),
            (UnaryOp::Not, t) if t.is_logical() => Ok((Node::Not(Box::new(node)), Type::Bool)),
            _ => Err(self.operand_error(op.symbol(), &[ty], span)),
        }
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        lhs: &Expr,
        rhs: &Expr,
        span: Span,
    ) -> Result<Typed, RouteError> {
        let (l, lt) = self.expr(lhs)?;
        let (r, rt) = self.expr(rhs)?;
        let (l, r) = (Box::new(l), Box::new(r));
        let dynamic = lt == Type::Dynamic || rt == Type::Dynamic;
        let bad = |c: &Self| Err(c.operand_error(op.symbol(), &[lt, rt], span));
        match op {
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod | BinaryOp::Add | BinaryOp::Sub => {
                if !(lt.unifies_with(Type::Number) && rt.unifies_with(Type::Number)) {
                    return bad(self);
                }
                let arith = match op {
                    BinaryOp::Mul => Arith::Mul,
                    BinaryOp::Div => Arith::Div,
                    BinaryOp::Mod => Arith::Mod,
                    BinaryOp::Add => Arith::Add,
                    _ => Arith::Sub,
                };
                Ok((
                    Node::Arith(arith, l, r),
                    if dynamic { Type::Dynamic } else { Type::Number },
                ))
            }
            BinaryOp::Concat => {
                if !(lt.unifies_with(Type::String) && rt.unifies_with(Type::String)) {
                    return bad(self);
                }
                let mut parts = Vec::new();
                for side in [*l, *r] {
                    match side {
                        Node::Concat(inner) => parts.extend(inner.into_vec()),
                        other => parts.push(other),
                    }
                }
                Ok((Node::Concat(parts.into_boxed_slice()), Type::String))
            }
            BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::NeSql => {
                if !lt.unifies_with(rt) {
                    return bad(self);
                }
                let compare = match op {
                    BinaryOp::Lt => Compare::Lt,
                    BinaryOp::Le => Compare::Le,
                    BinaryOp::Gt => Compare::Gt,
                    BinaryOp::Ge => Compare::Ge,
                    BinaryOp::Eq => Compare::Eq,
                    _ => Compare::Ne,
                };
                Ok((
                    Node::Compare {
                        op: compare,
                        lhs: l,
                        rhs: r,
                        dynamic,
                    },
                    Type::Bool,
                ))
            }
            BinaryOp::And | BinaryOp::Or => {
                if !(lt.is_logical() && rt.is_logical()) {
                    return bad(self);
                }
                Ok(logical(op == BinaryOp::And, l, lt, r, rt))
            }
            BinaryOp::Coalesce => {
                if !lt.unifies_with(rt) {
                    return bad(self);
                }
                if lt == Type::Undefined {
                    return Ok((*r, rt));
                }
                Ok((
                    Node::Coalesce(l, r),
                    if dynamic { Type::Dynamic } else { lt },
                ))
            }
        }
    }

    fn operand_error(&self, operator: &str, operands: &[Type], span: Span) -> RouteError {
        let hint = hint(operator, operands);
        self.error(
            span,
            RouteErrorKind::OperandTypes {
                operator: operator.to_owned(),
                operands: operands.to_vec(),
                hint,
            },
        )
    }
}

/// `AND` and `OR` with the `Null.cs` rules for a static `null` operand.
fn logical(and: bool, l: Box<Node>, lt: Type, r: Box<Node>, rt: Type) -> Typed {
    let null = Node::Const(Value::Null);
    match (and, lt == Type::Null, rt == Type::Null) {
        // null AND x is null; null OR null is null.
        (true, true, _) | (true, _, true) | (false, true, true) => (null, Type::Null),
        // null OR x is x (as a boolean).
        (false, true, false) => (
            Node::Or(Box::new(Node::Const(Value::Bool(false))), r),
            Type::Bool,
        ),
        (false, false, true) => (
            Node::Or(l, Box::new(Node::Const(Value::Bool(false)))),
            Type::Bool,
        ),
        (true, false, false) => (Node::And(l, r), Type::Bool),
        (false, false, false) => (Node::Or(l, r), Type::Bool),
    }
}

/// `text` without `prefix`, compared ignoring ASCII case.
fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn hint(operator: &str, operands: &[Type]) -> String {
    let has = |t: Type| operands.contains(&t);
    match operator {
        "AND" | "OR" | "NOT" => "AND, OR and NOT need boolean operands such as comparisons, true or false".to_owned(),
        "||" => "|| joins strings; use concat() or convert first".to_owned(),
        _ if has(Type::String) && has(Type::Number) => {
            "application and system properties are strings: convert with as_number(...), or query the body with $body.<path>"
                .to_owned()
        }
        _ if has(Type::Null) => "null can only be compared with null or a $body value; use is_null(...)".to_owned(),
        _ if has(Type::Undefined) => "undefined has no value to compute with; use is_defined(...)".to_owned(),
        "+" | "-" | "*" | "/" | "%" => "arithmetic needs numbers; convert strings with as_number(...)".to_owned(),
        _ => "both operands must have the same type".to_owned(),
    }
}

fn literal_node(literal: &Literal) -> Typed {
    match literal {
        Literal::Number(text) => match parse_number_literal(text) {
            Some(x) => (Node::Const(Value::number(x)), Type::Number),
            // A literal .NET cannot parse (e.g. `e5`, which the lexer reads as a real) is undefined.
            None => (Node::Const(Value::Undefined), Type::Undefined),
        },
        Literal::String(s) => (Node::Const(Value::Str(s.clone().into())), Type::String),
        Literal::True => (Node::Const(Value::Bool(true)), Type::Bool),
        Literal::False => (Node::Const(Value::Bool(false)), Type::Bool),
        Literal::Null => (Node::Const(Value::Null), Type::Null),
        Literal::Undefined => (Node::Const(Value::Undefined), Type::Undefined),
    }
}

/// Number literals are doubles; hex literals are read as a 64-bit signed integer, as `long.TryParse`.
fn parse_number_literal(text: &str) -> Option<f64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        if hex.len() > 16 {
            return None;
        }
        // Two's complement like .NET: 0xFFFFFFFFFFFFFFFF is -1.
        return u64::from_str_radix(hex, 16).ok().map(|v| v as i64 as f64);
    }
    text.parse::<f64>().ok().filter(|x| !x.is_nan())
}

fn build_call(function: Function, nodes: Vec<Node>) -> Node {
    let mut args = nodes.into_iter().map(Box::new);
    let mut next = || {
        args.next()
            .unwrap_or_else(|| Box::new(Node::Const(Value::Undefined)))
    };
    match function {
        Function::Abs => Node::Math(Math::Abs, next()),
        Function::Exp => Node::Math(Math::Exp, next()),
        Function::Square => Node::Math(Math::Square, next()),
        Function::Ceiling => Node::Math(Math::Ceiling, next()),
        Function::Floor => Node::Math(Math::Floor, next()),
        Function::Sign => Node::Math(Math::Sign, next()),
        Function::Sqrt => Node::Math(Math::Sqrt, next()),
        Function::Power => Node::Power(next(), next()),
        Function::AsNumber => Node::AsNumber(next()),
        Function::IsBool => Node::TypeTest(TypeTest::Bool, next()),
        Function::IsDefined => Node::TypeTest(TypeTest::Defined, next()),
        Function::IsNull => Node::TypeTest(TypeTest::Null, next()),
        Function::IsNumber => Node::TypeTest(TypeTest::Number, next()),
        Function::IsString => Node::TypeTest(TypeTest::String, next()),
        Function::Length => Node::Length(next()),
        Function::Lower => Node::ChangeCase {
            upper: false,
            arg: next(),
        },
        Function::Upper => Node::ChangeCase {
            upper: true,
            arg: next(),
        },
        Function::IndexOf => Node::IndexOf(next(), next()),
        Function::StartsWith => Node::StringTest(StringTest::StartsWith, next(), next()),
        Function::EndsWith => Node::StringTest(StringTest::EndsWith, next(), next()),
        Function::Contains => Node::StringTest(StringTest::Contains, next(), next()),
        Function::Substring => {
            let (s, start) = (next(), next());
            Node::Substring(s, start, args.next())
        }
        Function::Concat => Node::Concat(args.map(|b| *b).collect()),
        // Compiled separately: its argument is a twin path, not an expression.
        Function::TwinChangeIncludes => Node::Const(Value::Undefined),
    }
}
