use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn twin(id: &str, env: &str, z: i64) -> Value {
    json!({
        "deviceId": id,
        "capabilities": {"iotEdge": true},
        "tags": {"env": env, "loc": {"city": "Oslo"}},
        "properties": {"desired": {"$version": 4}, "reported": {"z": z, "lastDesiredVersion": 4,
                        "lastDesiredStatus": {"code": 200}}},
        "configurations": {"dep-1": {"status": "applied"}}
    })
}

fn run(q: &str, docs: &[Value]) -> Vec<Value> {
    execute(&parse_query(q).unwrap(), docs).0
}

#[test]
fn where_with_tags_and_reported_comparisons() {
    let docs = [
        twin("a", "test", 2),
        twin("b", "test", 0),
        twin("c", "prod", 5),
    ];
    let hits = run(
        "SELECT * FROM devices WHERE tags.env = 'test' AND properties.reported.z > 1",
        &docs,
    );
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["deviceId"], "a");
}

#[test]
fn or_not_parentheses_and_in() {
    let docs = [
        twin("a", "test", 2),
        twin("b", "dev", 0),
        twin("c", "prod", 5),
    ];
    let ids = |q| {
        run(q, &docs)
            .iter()
            .map(|d| d["deviceId"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids("select * from devices where not (tags.env = 'test' or tags.env = 'dev')"),
        ["c"]
    );
    assert_eq!(
        ids("SELECT * FROM devices WHERE tags.env IN ['dev', 'prod']"),
        ["b", "c"]
    );
    assert_eq!(
        ids("SELECT * FROM devices WHERE tags.env NIN ['dev', 'prod']"),
        ["a"]
    );
    assert_eq!(
        ids("SELECT * FROM devices WHERE tags.loc.city <> 'Oslo'"),
        Vec::<String>::new()
    );
    assert_eq!(
        ids("SELECT * FROM devices WHERE is_defined(tags.nothing)"),
        Vec::<String>::new()
    );
}

#[test]
fn configuration_status_with_quoted_ids_matches_case_insensitively() {
    let docs = [twin("a", "test", 2)];
    let q = "SELECT deviceId FROM devices WHERE configurations.[[dep-1]].status = 'Applied' \
             AND properties.desired.$version = properties.reported.lastDesiredVersion \
             AND properties.reported.lastDesiredStatus.code = 200";
    assert_eq!(run(q, &docs), [json!({"deviceId": "a"})]);
}

#[test]
fn undefined_paths_and_mixed_types_never_match() {
    let docs = [twin("a", "test", 2)];
    assert!(run("SELECT * FROM devices WHERE tags.missing != 'x'", &docs).is_empty());
    assert!(
        run(
            "SELECT * FROM devices WHERE properties.reported.z = '2'",
            &docs
        )
        .is_empty()
    );
}

#[test]
fn projection_aliases_and_count_with_group_by() {
    let docs = [
        twin("a", "test", 2),
        twin("b", "test", 0),
        twin("c", "prod", 5),
    ];
    assert_eq!(
        run(
            "SELECT deviceId, tags.env AS e FROM devices WHERE tags.env = 'prod'",
            &docs
        ),
        [json!({"deviceId": "c", "e": "prod"})]
    );
    assert_eq!(
        run("SELECT COUNT() AS n FROM devices", &docs),
        [json!({"n": 3})]
    );
    assert_eq!(
        run(
            "SELECT tags.env, COUNT() AS n FROM devices GROUP BY tags.env",
            &docs
        ),
        [
            json!({"env": "test", "n": 2}),
            json!({"env": "prod", "n": 1})
        ]
    );
}

#[test]
fn modules_source_and_condition_star() {
    let q = parse_query("SELECT * FROM devices.modules WHERE moduleId = '$edgeAgent'").unwrap();
    assert_eq!(q.from, Source::Modules);
    assert_eq!(parse_condition("*").unwrap(), Expr::True);
    assert!(matches(
        &parse_condition("tags.env='test'").unwrap(),
        &twin("a", "test", 1)
    ));
    assert!(matches(
        &parse_condition("deviceId = \"a\"").unwrap(),
        &twin("a", "test", 1)
    ));
}

#[test]
fn errors_name_the_position_and_what_was_expected() {
    let err = parse_query("SELECT * FROM devices WHERE tags.env = ").unwrap_err();
    assert_eq!(err.position, 39);
    assert_eq!(err.found, "end of input");
    let err = parse_query("SELECT * FROM things").unwrap_err();
    assert_eq!(err.position, 14);
    assert_eq!(err.expected, "devices or devices.modules");
    let err = parse_condition("tags.env = 'x").unwrap_err();
    assert_eq!(err.expected, "a closing quote");
    let err = parse_condition("tags.env == 'x'").unwrap_err();
    assert_eq!(err.position, 10);
}

proptest! {
    #[test]
    fn parser_never_panics_on_arbitrary_input(s in ".{0,80}") {
        let _ = parse_query(&s);
        let _ = parse_condition(&s);
    }

    #[test]
    fn string_literals_round_trip(s in "[^\\x00]{0,20}") {
        let quoted = format!("tags.v = '{}'", s.replace('\'', "''"));
        let doc = json!({"tags": {"v": s}});
        prop_assert!(matches(&parse_condition(&quoted).unwrap(), &doc));
    }

    #[test]
    fn numeric_comparisons_agree_with_rust(a in -1000i64..1000, b in -1000i64..1000) {
        let doc = json!({"properties": {"reported": {"z": a}}});
        let c = |op: &str| matches(&parse_condition(&format!("properties.reported.z {op} {b}")).unwrap(), &doc);
        prop_assert_eq!(c("<"), a < b);
        prop_assert_eq!(c(">="), a >= b);
        prop_assert_eq!(c("!="), a != b);
    }
}
