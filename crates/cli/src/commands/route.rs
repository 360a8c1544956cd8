//! `ironedge route …`: test routes and evaluate conditions against messages.
//!
//! `route test` exits 0 when the route matches, 1 when it does not, 2 on an error (a bad route
//! or message file). `route eval --jsonl` answers one JSON line per input line and exits 0.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use ironedge_routing::{
    CompiledRoute, DEFAULT_PRIORITY, Message, RouteError, RouteMatch, Truth, compile,
    compile_condition,
};
use serde_json::{Value, json};

/// Subcommands of `ironedge route`.
#[derive(Debug, Subcommand)]
pub(crate) enum RouteCommand {
    /// Test one route against one message; exit 0 if it matches, 1 if not, 2 on an error.
    Test {
        /// The route, `FROM … WHERE … INTO …`.
        #[arg(long)]
        route: String,
        /// The message as JSON (see README "Message JSON and route tools"); `-` reads stdin.
        #[arg(long)]
        message: PathBuf,
        /// The route's priority, 0–9 (default: as a plain route string, 2000000000).
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=9))]
        priority: Option<u32>,
        /// The route's timeToLiveSecs (default 0: the storeAndForwardConfiguration TTL).
        #[arg(long)]
        ttl: Option<u32>,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate conditions or routes given as JSON lines on stdin.
    Eval {
        /// Read JSON lines from stdin, write one JSON line per input.
        #[arg(long)]
        jsonl: bool,
    },
}

/// Runs a `route` subcommand.
pub(crate) fn run(cmd: RouteCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RouteCommand::Test {
            route,
            message,
            priority,
            ttl,
            json,
        } => {
            let settings = TestSettings {
                priority: priority.unwrap_or(DEFAULT_PRIORITY),
                ttl: ttl.unwrap_or(0),
                json,
            };
            test(&route, &message, &settings)
        }
        RouteCommand::Eval { jsonl: true } => {
            eval_jsonl(std::io::stdin().lock(), std::io::stdout().lock())
        }
        RouteCommand::Eval { jsonl: false } => {
            anyhow::bail!("`ironedge route eval` reads JSON lines: run it with --jsonl")
        }
    }
}

struct TestSettings {
    priority: u32,
    ttl: u32,
    json: bool,
}

fn test(
    route_text: &str,
    message_path: &Path,
    settings: &TestSettings,
) -> anyhow::Result<ExitCode> {
    let route = compile(route_text)
        .map_err(|err| anyhow::anyhow!("invalid route: {}", err.render(route_text)))?;
    let message = read_message(message_path)?;
    let outcome = route.evaluate(&message);
    let mut out = std::io::stdout().lock();
    if settings.json {
        let mut report = route_json(&route, &outcome);
        report["priority"] = json!(settings.priority);
        report["timeToLiveSecs"] = json!(settings.ttl);
        report["messageSource"] = json!(message.source);
        writeln!(out, "{report}")?;
    } else {
        write_report(&mut out, &route, &message, &outcome, settings)?;
    }
    Ok(if outcome.matched() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn read_message(path: &Path) -> anyhow::Result<Message> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading the message from stdin")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading message file {}", path.display()))?
    };
    Message::from_json(&text).with_context(|| format!("message file {}", path.display()))
}

fn write_report(
    out: &mut impl Write,
    route: &CompiledRoute,
    message: &Message,
    outcome: &RouteMatch,
    settings: &TestSettings,
) -> std::io::Result<()> {
    writeln!(out, "route      {}", route.ast())?;
    let verb = if outcome.source_matched {
        "matches"
    } else {
        "does not match"
    };
    writeln!(
        out,
        "source     {} {verb} message source {}",
        route.source(),
        message.source
    )?;
    if outcome.source_matched {
        writeln!(out, "condition  {}", outcome.condition)?;
    }
    if outcome.matched() {
        let priority = if settings.priority == DEFAULT_PRIORITY {
            format!("{} (default)", settings.priority)
        } else {
            settings.priority.to_string()
        };
        let ttl = if settings.ttl == 0 {
            "0 (storeAndForwardConfiguration.timeToLiveSecs)".to_owned()
        } else {
            format!("{} s", settings.ttl)
        };
        writeln!(out, "result     matched")?;
        writeln!(
            out,
            "sink       {} (endpoint id {})",
            route.endpoint(),
            route.endpoint().id("<edge device id>")
        )?;
        writeln!(out, "priority   {priority}")?;
        writeln!(out, "ttl        {ttl}")?;
    } else if !outcome.source_matched {
        writeln!(
            out,
            "result     not matched: the message comes from another source"
        )?;
    } else if outcome.condition == Truth::Undefined {
        writeln!(
            out,
            "result     not matched: the condition is undefined (a property it reads is missing, \
             a $body query does not apply, or a value has the wrong type)"
        )?;
    } else {
        writeln!(out, "result     not matched: the condition is false")?;
    }
    for warning in route.warnings() {
        writeln!(out, "warning    {warning}")?;
    }
    Ok(())
}

/// The JSON answer for a route evaluated on a message.
fn route_json(route: &CompiledRoute, outcome: &RouteMatch) -> Value {
    let mut answer = json!({
        "matched": outcome.matched(),
        "sink": route.endpoint().to_string(),
        "sourceMatched": outcome.source_matched,
        "condition": outcome.condition.as_str(),
    });
    if !route.warnings().is_empty() {
        answer["warnings"] = route
            .warnings()
            .iter()
            .map(|w| json!(w.to_string()))
            .collect();
    }
    answer
}

fn error_json(err: &RouteError) -> Value {
    json!({ "error": err.kind.to_string(), "line": err.line, "column": err.column })
}

/// Answers each JSON line of `input` with one JSON line on `output`.
fn eval_jsonl(input: impl BufRead, mut output: impl Write) -> anyhow::Result<ExitCode> {
    for line in input.lines() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = eval_line(&line);
        writeln!(output, "{answer}")?;
        // Tools drive this interactively, one request at a time.
        output.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn eval_line(line: &str) -> Value {
    let request: Value = match serde_json::from_str(line) {
        Ok(value) => value,
        Err(err) => return json!({ "error": format!("input line is not JSON: {err}") }),
    };
    let message = match request.get("message") {
        None => Message::new("/messages"),
        Some(json) => match Message::from_json_value(json) {
            Ok(message) => message,
            Err(err) => return json!({ "error": format!("message: {err}") }),
        },
    };
    match (request.get("condition"), request.get("route")) {
        (Some(Value::String(condition)), None) => match compile_condition(condition) {
            Ok(compiled) => json!({ "result": compiled.evaluate(&message).as_str() }),
            Err(err) => error_json(&err),
        },
        (None, Some(Value::String(route))) => match compile(route) {
            Ok(compiled) => route_json(&compiled, &compiled.evaluate(&message)),
            Err(err) => error_json(&err),
        },
        _ => {
            json!({ "error": "each line needs a \"condition\" or a \"route\" string (and optionally a \"message\")" })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval_lines(input: &str) -> Vec<Value> {
        let mut out = Vec::new();
        eval_jsonl(input.as_bytes(), &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn conditions_answer_true_false_or_undefined() {
        let answers = eval_lines(concat!(
            r#"{"condition": "alert = 'high'", "message": {"properties": {"alert": "high"}}}"#,
            "\n",
            r#"{"condition": "alert = 'high'", "message": {"properties": {"alert": "low"}}}"#,
            "\n\n",
            r#"{"condition": "alert = 'high'"}"#,
            "\n",
        ));
        assert_eq!(
            answers,
            vec![
                json!({"result": "true"}),
                json!({"result": "false"}),
                json!({"result": "undefined"})
            ]
        );
    }

    #[test]
    fn bad_conditions_answer_with_line_and_column() {
        let answers =
            eval_lines("{\"condition\": \"temp > 30\"}\n{\"condition\": \"a =\\n= b\"}\n");
        assert_eq!(answers[0]["line"], 1);
        assert_eq!(answers[0]["column"], 1);
        assert!(answers[0]["error"].as_str().unwrap().contains("as_number"));
        assert_eq!(
            (answers[1]["line"].as_u64(), answers[1]["column"].as_u64()),
            (Some(2), Some(1))
        );
    }

    #[test]
    fn routes_answer_whether_they_matched_and_the_sink() {
        let answers = eval_lines(concat!(
            r#"{"route": "FROM /messages/modules/s/* WHERE $body.t > 3 INTO BrokeredEndpoint(\"/modules/f/inputs/i\")", "message": {"body": "{\"t\": 4}", "systemProperties": {"contentType": "application/json", "contentEncoding": "utf-8", "connectionModuleId": "s", "outputName": "o"}}}"#,
            "\n",
            r#"{"route": "FROM /messages/modules/s/* INTO $upstream"}"#,
            "\n",
            r#"{"route": "FROM /messages INTO upstream"}"#,
            "\n",
        ));
        assert_eq!(answers[0]["matched"], true);
        assert_eq!(
            answers[0]["sink"],
            r#"BrokeredEndpoint("/modules/f/inputs/i")"#
        );
        assert_eq!(answers[1]["matched"], false);
        assert_eq!(answers[1]["sourceMatched"], false);
        assert_eq!(answers[2]["column"], 21);
    }

    #[test]
    fn malformed_lines_get_an_error_line_and_the_stream_goes_on() {
        let answers = eval_lines(
            "not json\n{\"x\": 1}\n{\"condition\": \"true\", \"message\": {\"bogus\": 1}}\n{\"condition\": \"true\"}\n",
        );
        assert_eq!(answers.len(), 4);
        assert!(answers[0]["error"].as_str().unwrap().contains("not JSON"));
        assert!(
            answers[1]["error"]
                .as_str()
                .unwrap()
                .contains("\"condition\" or a \"route\"")
        );
        assert!(
            answers[2]["error"]
                .as_str()
                .unwrap()
                .contains("unknown message field 'bogus'")
        );
        assert_eq!(answers[3], json!({"result": "true"}));
    }

    fn message_file(json: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(json.as_bytes()).unwrap();
        file
    }

    fn settings() -> TestSettings {
        TestSettings {
            priority: DEFAULT_PRIORITY,
            ttl: 0,
            json: false,
        }
    }

    #[test]
    fn route_test_exits_0_when_matched_and_1_when_not() {
        let file = message_file(
            r#"{"properties": {"alert": "high"}, "source": "/messages/modules/s/outputs/o"}"#,
        );
        let matched = test(
            "FROM /messages/* WHERE alert = 'high' INTO $upstream",
            file.path(),
            &settings(),
        );
        assert_eq!(matched.unwrap(), ExitCode::SUCCESS);
        let not_matched = test(
            "FROM /messages/* WHERE alert = 'low' INTO $upstream",
            file.path(),
            &settings(),
        );
        assert_eq!(not_matched.unwrap(), ExitCode::from(1));
    }

    #[test]
    fn route_test_fails_with_the_position_for_a_bad_route_or_message() {
        let file = message_file("{}");
        let err = test("FROM /messages INTO upstream", file.path(), &settings()).unwrap_err();
        assert!(format!("{err:#}").contains("line 1, column 21"), "{err:#}");
        let bad = message_file(r#"{"propertys": {}}"#);
        let err = test("FROM /messages INTO $upstream", bad.path(), &settings()).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown message field 'propertys'"),
            "{err:#}"
        );
    }

    #[test]
    fn the_report_names_sink_priority_ttl_and_warnings() {
        let route = compile(r#"FROM /* WHERE $correlationId = 'c' OR true INTO BrokeredEndpoint("/modules/f/inputs/i")"#)
            .unwrap();
        let message = Message::new("/messages");
        let outcome = route.evaluate(&message);
        let mut out = Vec::new();
        let settings = TestSettings {
            priority: 3,
            ttl: 60,
            json: false,
        };
        write_report(&mut out, &route, &message, &outcome, &settings).unwrap();
        let report = String::from_utf8(out).unwrap();
        assert!(report.contains("result     matched"), "{report}");
        assert!(report.contains(r#"sink       BrokeredEndpoint("/modules/f/inputs/i") (endpoint id <edge device id>/f/i)"#), "{report}");
        assert!(report.contains("priority   3\n"), "{report}");
        assert!(report.contains("ttl        60 s"), "{report}");
        assert!(
            report.contains("warning    line 1, column 15: on IoT Edge the correlation id is $cid"),
            "{report}"
        );
    }
}
