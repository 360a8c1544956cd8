//! Grammar rules, operator precedence, the reference lexer's quirks, and canonical printing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ironedge_routing::{
    BinaryOp, ExprKind, Literal, Message, Truth, UnaryOp, compile, compile_condition,
    parse_condition, parse_route,
};

fn expr(text: &str) -> ExprKind {
    parse_condition(text).unwrap().unwrap().expr.kind
}

fn canonical(text: &str) -> String {
    parse_condition(text).unwrap().unwrap().to_string()
}

fn eval(text: &str, message: &Message) -> Truth {
    compile_condition(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .evaluate(message)
}

#[test]
fn keywords_are_case_insensitive_and_literals_lowercase_only() {
    let route = parse_route(
        "select * from /messages where a = 'x' AnD NOT b = 'y' oR c = 'z' into $upstream",
    )
    .unwrap();
    assert_eq!(
        route.to_string(),
        r#"FROM /messages WHERE a = "x" AND (NOT b) = "y" OR c = "z" INTO $upstream"#
    );
    assert_eq!(expr("true"), ExprKind::Literal(Literal::True));
    // `TRUE` is not the literal: it is an application property named TRUE.
    assert_eq!(expr("TRUE"), ExprKind::Property("TRUE".into()));
    assert_eq!(expr("Null"), ExprKind::Property("Null".into()));
    assert_eq!(expr("undefined"), ExprKind::Literal(Literal::Undefined));
}

#[test]
fn precedence_follows_the_reference_from_coalesce_to_unary() {
    assert_eq!(canonical("a ?? b || c"), "a ?? b || c");
    assert_eq!(canonical("(1 + 2) * 3 = 9"), "(1 + 2) * 3 = 9");
    assert_eq!(canonical("1 + 2 * 3 = 7"), "1 + 2 * 3 = 7");
    assert_eq!(canonical("1 - (2 - 3) = 2"), "1 - (2 - 3) = 2");
    assert_eq!(canonical("(1 - 2) - 3 = -4"), "1 - 2 - 3 = -4");
    assert_eq!(
        canonical("a = 'x' or b = 'y' and c = 'z'"),
        r#"a = "x" OR b = "y" AND c = "z""#
    );
    assert_eq!(
        canonical("(a = 'x' or b = 'y') and c = 'z'"),
        r#"(a = "x" OR b = "y") AND c = "z""#
    );
    assert_eq!(canonical("NOT (a = 'x')"), r#"NOT (a = "x")"#);
    assert_eq!(canonical("- (1 + 2)"), "- (1 + 2)");
    // NOT binds tighter than comparisons: NOT a = b is (NOT a) = b.
    let ExprKind::Binary {
        op: BinaryOp::Eq,
        lhs,
        ..
    } = expr("NOT a = b")
    else {
        panic!()
    };
    assert!(matches!(
        lhs.kind,
        ExprKind::Unary {
            op: UnaryOp::Not,
            ..
        }
    ));
    // Coalesce binds loosest: key1 ?? "hello" = "value1" is key1 ?? ("hello" = "value1").
    let ExprKind::Binary {
        op: BinaryOp::Coalesce,
        ..
    } = expr(r#"key1 ?? "hello" = "value1""#)
    else {
        panic!()
    };
    // Comparison binds tighter than equality.
    let ExprKind::Binary {
        op: BinaryOp::Eq, ..
    } = expr("1 < 2 = true")
    else {
        panic!()
    };
    let m = Message::new("/messages");
    assert_eq!(eval("1 < 2 = true", &m), Truth::True);
    assert_eq!(eval("2 * 3 + 4 * 5 = 26", &m), Truth::True);
    assert_eq!(eval("10 - 4 - 3 = 3", &m), Truth::True);
    assert_eq!(eval("12 / 3 / 2 = 2", &m), Truth::True);
    assert_eq!(eval("7 % 4 * 2 = 6", &m), Truth::True);
    assert_eq!(eval("false and false or true", &m), Truth::True);
    assert_eq!(eval("true or true and false", &m), Truth::True);
}

#[test]
fn every_binary_operator_parses() {
    for (text, op) in [
        ("1 * 2", BinaryOp::Mul),
        ("1 / 2", BinaryOp::Div),
        ("1 % 2", BinaryOp::Mod),
        ("1 + 2", BinaryOp::Add),
        ("1 - 2", BinaryOp::Sub),
        ("'a' || 'b'", BinaryOp::Concat),
        ("1 < 2", BinaryOp::Lt),
        ("1 <= 2", BinaryOp::Le),
        ("1 > 2", BinaryOp::Gt),
        ("1 >= 2", BinaryOp::Ge),
        ("1 = 2", BinaryOp::Eq),
        ("1 != 2", BinaryOp::Ne),
        ("1 <> 2", BinaryOp::NeSql),
        ("true AND false", BinaryOp::And),
        ("true OR false", BinaryOp::Or),
        ("1 ?? 2", BinaryOp::Coalesce),
        ("1>2", BinaryOp::Gt),
        ("a=b", BinaryOp::Eq),
    ] {
        let ExprKind::Binary { op: parsed, .. } = expr(text) else {
            panic!("{text}")
        };
        assert_eq!(parsed, op, "{text}");
    }
}

#[test]
fn identifiers_take_every_character_the_reference_lexer_allows() {
    // The reference lexer reads the longest identifier: these are single property names.
    for name in [
        "alert-level",
        "a+b",
        "3-4",
        "x*y",
        "a||b",
        "don't",
        "a.b.c",
        "'a'||'b'",
        "temp%",
        "1.5.3",
        "3abc",
        "android",
        "notice",
        "orange",
    ] {
        assert_eq!(expr(name), ExprKind::Property(name.into()), "{name}");
    }
    let m = Message::new("/messages").with_property("alert-level", "high");
    assert_eq!(eval("alert-level = 'high'", &m), Truth::True);
    // So `3+4 = 7` compares a property named `3+4` (a string) with a number: a type error.
    assert!(compile_condition("3+4 = 7").is_err());
    assert!(compile_condition("3 + 4 = 7").is_ok());
}

#[test]
fn numbers_are_decimal_real_exponent_and_hex() {
    let m = Message::new("/messages");
    for text in [
        "10 = 10.0",
        "0x1F = 31",
        "0X10 = 16",
        "1e3 = 1000",
        "1.5E-1 = 0.15",
        ".5 = 0.5",
        "-.5 = -0.5",
        "-1 < 0",
        "- 1 = -1",
    ] {
        assert_eq!(eval(text, &m), Truth::True, "{text}");
    }
    assert_eq!(expr("-1"), ExprKind::Literal(Literal::Number("-1".into())));
    assert!(matches!(
        expr("- 1"),
        ExprKind::Unary {
            op: UnaryOp::Negate,
            ..
        }
    ));
    // `e5` is a real literal .NET cannot parse: an undefined value, not a property.
    assert_eq!(expr("e5"), ExprKind::Literal(Literal::Number("e5".into())));
    assert_eq!(eval("is_defined(e5)", &m), Truth::False);
    // 0xFFFFFFFFFFFFFFFF is read as a signed 64-bit integer, as .NET's long.TryParse does.
    assert_eq!(eval("0xFFFFFFFFFFFFFFFF = -1", &m), Truth::True);
}

#[test]
fn strings_take_either_quote_and_four_escapes() {
    let m = Message::new("/messages");
    for text in [
        r#""a" = 'a'"#,
        r#"'it\'s' = "it's""#,
        r#""say \"hi\"" = 'say "hi"'"#,
        r#"'back\\slash' = "back\\slash""#,
        r#"'\u0041\u00e9' = 'Aé'"#,
        r#"'\ud83d\ude00' = '😀'"#,
        "length('multi\nline') = 10",
    ] {
        assert_eq!(eval(text, &m), Truth::True, "{text}");
    }
    for bad in [r"'\n'", r"'\x41'", r"'\u12'", "'open", "\"open"] {
        assert!(compile_condition(bad).is_err(), "{bad}");
    }
}

#[test]
fn system_properties_and_escapes_parse() {
    assert_eq!(
        expr("$contentType"),
        ExprKind::SystemProperty("$contentType".into())
    );
    assert_eq!(
        expr("$body.a.b[0]"),
        ExprKind::SystemProperty("$body.a.b[0]".into())
    );
    assert_eq!(
        expr("{ $contentType }"),
        ExprKind::EscapedSystemProperty("$contentType".into())
    );
    assert_eq!(
        expr("$dt-subject"),
        ExprKind::SystemProperty("$dt-subject".into())
    );
}

#[test]
fn function_calls_take_zero_or_more_arguments_and_any_case() {
    let ExprKind::Call { name, args } = expr("IS_DEFINED ( key1 )") else {
        panic!()
    };
    assert_eq!((name.as_str(), args.len()), ("IS_DEFINED", 1));
    let ExprKind::Call { args, .. } = expr("concat('a', 'b', 'c')") else {
        panic!()
    };
    assert_eq!(args.len(), 3);
    let ExprKind::Call { args, .. } = expr("f()") else {
        panic!()
    };
    assert!(args.is_empty());
}

#[test]
fn the_canonical_form_uses_upper_case_keywords_and_double_quotes() {
    // `'it''s'` is not a string with a doubled quote: the reference lexer reads one name.
    assert_eq!(expr("'it''s'"), ExprKind::Property("'it''s'".into()));
    let route = parse_route(r#"select * from /messages/modules/m/* where $body.t > 3 and not(x <> "q\"") into brokeredEndpoint('/modules/a/inputs/b')"#).unwrap();
    let printed = route.to_string();
    assert_eq!(
        printed,
        r#"FROM /messages/modules/m/* WHERE $body.t > 3 AND NOT (x <> "q\"") INTO brokeredEndpoint("/modules/a/inputs/b")"#
    );
    assert_eq!(parse_route(&printed).unwrap(), route);
    assert!(compile(&printed).is_ok());
}

#[test]
fn deeply_nested_input_is_rejected_instead_of_overflowing_the_stack() {
    let deep = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
    let err = compile_condition(&deep).unwrap_err();
    assert!(err.to_string().contains("nested parentheses"), "{err}");
    let long = vec!["1"; 5_000].join(" + ");
    assert!(compile_condition(&format!("{long} = 1")).is_err());
    let nots = format!("{}true", "NOT ".repeat(5_000));
    assert!(compile_condition(&nots).is_err());
    // Realistic sizes are fine.
    let wide = (0..100)
        .map(|i| format!("a{i} = 'v'"))
        .collect::<Vec<_>>()
        .join(" OR ");
    assert!(compile_condition(&wide).is_ok());
}

#[test]
fn a_slash_star_source_opens_a_comment_when_a_closing_star_slash_follows() {
    // The reference lexer reads `/* … */` as a comment wherever it starts.
    assert!(compile(r#"FROM /* INTO BrokeredEndpoint("/modules/m/inputs/*/x")"#).is_err());
    assert!(compile(r#"FROM /* INTO BrokeredEndpoint("/modules/m/inputs/x")"#).is_ok());
}

#[test]
fn an_operator_glued_to_the_next_operand_is_accepted() {
    // IoT Edge rejects `3 -1` (two numbers in a row); reading it as `3 - 1` changes no accepted route.
    let m = Message::new("/messages");
    assert_eq!(eval("3 -1 = 2", &m), Truth::True);
    assert_eq!(eval("as_number(key) +1 > 0 OR true", &m), Truth::True);
}
