//! Property tests: canonical printing round-trips, and no input panics the parser, compiler or evaluator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ironedge_routing::{
    BinaryOp, ConditionAst, Expr, ExprKind, Literal, Message, RouteAst, SinkAst, Span, UnaryOp,
    compile, compile_condition, parse_condition, parse_route,
};
use proptest::prelude::*;

fn e(kind: ExprKind) -> Expr {
    Expr {
        kind,
        span: Span::default(),
    }
}

fn name() -> impl Strategy<Value = String> {
    // A prefix keeps generated names clear of keywords and number-like words such as `e5`.
    "p_[a-zA-Z0-9_]{0,5}"
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        prop::sample::select(vec![
            "0", "12", "-3", "1.5", "-.25", "0x1F", "1e3", "2.5E-2", "e5"
        ])
        .prop_map(|n| Literal::Number(n.to_owned())),
        any::<String>().prop_map(Literal::String),
        Just(Literal::True),
        Just(Literal::False),
        Just(Literal::Null),
        Just(Literal::Undefined),
    ]
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        literal().prop_map(|l| e(ExprKind::Literal(l))),
        name().prop_map(|n| e(ExprKind::Property(n))),
        name().prop_map(|n| e(ExprKind::SystemProperty(format!("${n}")))),
        "[a-z]{1,4}(\\[[0-9]\\])?(\\.[a-z]{1,4}(\\[[0-9]\\])?){0,2}"
            .prop_map(|p| e(ExprKind::SystemProperty(format!("$body.{p}")))),
        name().prop_map(|n| e(ExprKind::EscapedSystemProperty(format!("${n}")))),
    ]
}

fn binary_op() -> impl Strategy<Value = BinaryOp> {
    prop::sample::select(vec![
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Mod,
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Concat,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::NeSql,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::Coalesce,
    ])
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            (
                prop::sample::select(vec![UnaryOp::Negate, UnaryOp::Not]),
                inner.clone()
            )
                .prop_map(|(op, x)| e(ExprKind::Unary {
                    op,
                    operand: Box::new(x)
                })),
            (binary_op(), inner.clone(), inner.clone()).prop_map(|(op, l, r)| e(
                ExprKind::Binary {
                    op,
                    lhs: Box::new(l),
                    rhs: Box::new(r)
                }
            )),
            (
                prop::sample::select(vec!["abs", "concat", "SUBSTRING", "is_defined", "p_fn"]),
                prop::collection::vec(inner, 0..4)
            )
                .prop_map(|(n, args)| e(ExprKind::Call {
                    name: n.to_owned(),
                    args
                })),
        ]
    })
}

fn route() -> impl Strategy<Value = RouteAst> {
    let source = prop_oneof![
        Just("/*".to_owned()),
        Just("/messages/*".to_owned()),
        "(/[a-zA-Z0-9_]{1,8}){1,4}(/\\*)?",
        Just("/twinChangeNotifications".to_owned()),
    ];
    let sink = prop_oneof![
        Just(SinkAst::System("$upstream".to_owned())),
        any::<String>().prop_map(|address| SinkAst::Function {
            name: "BrokeredEndpoint".to_owned(),
            address
        }),
    ];
    (source, prop::option::of(expr()), sink).prop_map(|(source, condition, sink)| RouteAst {
        source,
        source_span: Span::default(),
        condition: condition.map(|expr| ConditionAst {
            expr,
            span: Span::default(),
        }),
        sink,
        sink_span: Span::default(),
    })
}

const TOKENS: &[&str] = &[
    "FROM",
    "WHERE",
    "INTO",
    "SELECT",
    "*",
    "/messages",
    "/*",
    "*/",
    "$upstream",
    "(",
    ")",
    "'a'",
    "\"b\"",
    "AND",
    "OR",
    "NOT",
    "=",
    "<>",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "/",
    "%",
    "||",
    "??",
    "1",
    "0x1f",
    "1e5",
    "-2",
    "true",
    "false",
    "null",
    "undefined",
    "key",
    "$body.a",
    "$body.a[0]",
    "$body.",
    "{",
    "}",
    "$x",
    ",",
    "abs",
    "concat",
    "substring",
    "twin_change_includes",
    "properties.reported.x",
    "BrokeredEndpoint",
    "'",
    "\"",
    "\\",
    "é",
    "[",
    "]",
    "-x",
    "a+b",
    "'q'x",
    "'it''s'",
    "e5",
    "TRUE",
    "$",
    ".",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(TOKENS),
            prop::sample::select(vec!["", " ", "\n"]),
        ),
        0..24,
    )
    .prop_map(|parts| {
        parts
            .into_iter()
            .map(|(t, sep)| format!("{t}{sep}"))
            .collect()
    })
}

fn message() -> impl Strategy<Value = Message> {
    let body = prop_oneof![
        any::<String>(),
        Just(r#"{"a":1,"b":[1,"x",null,{"c":true}],"t":"2020-01-01T00:00:00Z"}"#.to_owned()),
        Just(r#"{"a":"s","properties":{"reported":{"x":1}}}"#.to_owned()),
    ];
    (
        body,
        prop::collection::vec((name(), prop::option::of(any::<String>())), 0..4),
    )
        .prop_map(|(body, props)| {
            let mut m = Message::new("/messages/modules/m/outputs/o").with_json_body(body);
            for (n, v) in props {
                m = match v {
                    Some(v) => m.with_property(n, v),
                    None => m.with_null_property(n),
                };
            }
            m.with_property("key", "3")
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn printed_conditions_parse_back_to_the_same_tree(x in expr()) {
        let printed = x.to_string();
        let reparsed = parse_condition(&printed)
            .unwrap_or_else(|err| panic!("{printed:?} does not parse: {err}"))
            .unwrap();
        prop_assert_eq!(&reparsed.expr, &x, "printed as {}", printed);
    }

    #[test]
    fn printed_routes_parse_back_to_the_same_tree(r in route()) {
        let printed = r.to_string();
        // As in the reference lexer, `/*` after FROM opens a comment when a `*/` follows.
        prop_assume!(!printed.contains("*/"));
        let reparsed = parse_route(&printed).unwrap_or_else(|err| panic!("{printed:?} does not parse: {err}"));
        prop_assert_eq!(&reparsed, &r, "printed as {}", printed);
    }

    #[test]
    fn arbitrary_text_never_panics_the_parser_or_compiler(text in any::<String>()) {
        let _ = compile(&text);
        let _ = compile_condition(&text);
        let _ = compile(&format!("FROM /messages WHERE {text} INTO $upstream"));
    }

    #[test]
    fn token_soup_never_panics_and_errors_have_positions_inside_the_text(text in token_soup(), m in message()) {
        for candidate in [text.clone(), format!("FROM /* WHERE {text} INTO $upstream")] {
            match compile(&candidate) {
                Ok(route) => { route.evaluate(&m); }
                Err(err) => {
                    prop_assert!(err.line >= 1 && err.column >= 1);
                    prop_assert!(err.line <= candidate.lines().count().max(1) + 1);
                    prop_assert!(err.span.start <= candidate.len());
                }
            }
        }
        if let Ok(condition) = compile_condition(&text) {
            condition.evaluate(&m);
        }
    }

    #[test]
    fn whatever_parses_prints_to_text_that_parses_to_the_same_tree(text in token_soup()) {
        if let Ok(Some(condition)) = parse_condition(&text) {
            let printed = condition.to_string();
            let again = parse_condition(&printed)
                .unwrap_or_else(|err| panic!("{text:?} printed as {printed:?} does not parse: {err}"));
            prop_assert_eq!(again.as_ref(), Some(&condition), "{:?} printed as {:?}", text, printed);
        }
        let route_text = format!("FROM /messages WHERE {text} INTO $upstream");
        if let Ok(route) = parse_route(&route_text) {
            let printed = route.to_string();
            let again = parse_route(&printed)
                .unwrap_or_else(|err| panic!("{route_text:?} printed as {printed:?} does not parse: {err}"));
            prop_assert_eq!(&again, &route, "printed as {}", printed);
        }
    }

    #[test]
    fn generated_conditions_that_compile_evaluate_without_panicking(x in expr(), m in message()) {
        if let Ok(condition) = compile_condition(&x.to_string()) {
            condition.evaluate(&m);
        }
    }
}
