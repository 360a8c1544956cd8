//! Recursive-descent parser for the IoT Hub query subset (`reference/iot-hub-protocols.md` §3.3).

use serde_json::Value;

use super::QueryError;
use super::ast::{CmpOp, Expr, Operand, Path, Query, Select, SelectItem, Source};
use super::lexer::{Tok, Token, lex};

/// Parses a full `SELECT` query.
pub fn parse_query(input: &str) -> Result<Query, QueryError> {
    let mut p = Parser::new(input)?;
    let q = p.query()?;
    p.end()?;
    Ok(q)
}

/// Parses a condition (a configuration's `targetCondition`); `*` or empty means "all".
pub fn parse_condition(input: &str) -> Result<Expr, QueryError> {
    let trimmed = input.trim();
    if trimmed.is_empty() || trimmed == "*" {
        return Ok(Expr::True);
    }
    let mut p = Parser::new(input)?;
    let e = p.expr()?;
    p.end()?;
    Ok(e)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    len: usize,
}

impl Parser {
    fn new(input: &str) -> Result<Self, QueryError> {
        Ok(Self {
            tokens: lex(input)?,
            at: 0,
            len: input.chars().count(),
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.tokens.get(self.at).map_or(self.len, |t| t.pos)
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "end of input".to_owned(),
            Some(Tok::Word(w)) => format!("{w:?}"),
            Some(Tok::Quoted(q)) => format!("[[{q}]]"),
            Some(Tok::Str(s)) => format!("'{s}'"),
            Some(Tok::Num(_, text)) => text.clone(),
            Some(Tok::Sym(s)) => format!("{s:?}"),
        }
    }

    fn fail<T>(&self, expected: &str) -> Result<T, QueryError> {
        Err(QueryError::new(self.pos(), expected, &self.found()))
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let hit = self.is_keyword(kw);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn keyword(&mut self, kw: &str) -> Result<(), QueryError> {
        if self.eat_keyword(kw) {
            Ok(())
        } else {
            self.fail(kw)
        }
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        let hit = matches!(self.peek(), Some(Tok::Sym(s)) if *s == sym);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn sym(&mut self, sym: &str) -> Result<(), QueryError> {
        if self.eat_sym(sym) {
            Ok(())
        } else {
            self.fail(&format!("{sym:?}"))
        }
    }

    fn end(&self) -> Result<(), QueryError> {
        if self.peek().is_some() {
            self.fail("end of query")
        } else {
            Ok(())
        }
    }

    fn query(&mut self) -> Result<Query, QueryError> {
        self.keyword("SELECT")?;
        let select = if self.eat_sym("*") {
            Select::All
        } else {
            Select::Items(self.select_items()?)
        };
        self.keyword("FROM")?;
        let from = self.source()?;
        let filter = if self.eat_keyword("WHERE") {
            self.expr()?
        } else {
            Expr::True
        };
        let mut group_by = Vec::new();
        if self.eat_keyword("GROUP") {
            self.keyword("BY")?;
            loop {
                group_by.push(self.path()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        Ok(Query {
            select,
            from,
            filter,
            group_by,
        })
    }

    fn select_items(&mut self) -> Result<Vec<SelectItem>, QueryError> {
        let mut items = Vec::new();
        loop {
            let item = if self.is_keyword("COUNT")
                && matches!(
                    self.tokens.get(self.at + 1).map(|t| &t.tok),
                    Some(Tok::Sym("("))
                ) {
                self.at += 1;
                self.sym("(")?;
                self.sym(")")?;
                SelectItem::Count(self.alias()?)
            } else {
                let path = self.path()?;
                SelectItem::Path(path, self.alias()?)
            };
            items.push(item);
            if !self.eat_sym(",") {
                return Ok(items);
            }
        }
    }

    fn alias(&mut self) -> Result<Option<String>, QueryError> {
        if !self.eat_keyword("AS") {
            return Ok(None);
        }
        match self.peek() {
            Some(Tok::Word(w)) => {
                let w = w.clone();
                self.at += 1;
                Ok(Some(w))
            }
            _ => self.fail("an alias name"),
        }
    }

    fn source(&mut self) -> Result<Source, QueryError> {
        if !self.eat_keyword("devices") {
            return self.fail("devices or devices.modules");
        }
        if self.eat_sym(".") {
            if self.eat_keyword("modules") {
                return Ok(Source::Modules);
            }
            return self.fail("modules");
        }
        Ok(Source::Devices)
    }

    fn expr(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.and()?;
        while self.eat_keyword("OR") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.not()?;
        while self.eat_keyword("AND") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, QueryError> {
        if self.eat_keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        if self.eat_sym("(") {
            let e = self.expr()?;
            self.sym(")")?;
            return Ok(e);
        }
        if self.is_keyword("is_defined")
            && matches!(
                self.tokens.get(self.at + 1).map(|t| &t.tok),
                Some(Tok::Sym("("))
            )
        {
            self.at += 2;
            let p = self.path()?;
            self.sym(")")?;
            return Ok(Expr::IsDefined(p));
        }
        let left = self.operand()?;
        if self.eat_keyword("IN") {
            return Ok(Expr::In {
                operand: left,
                list: self.list()?,
                negated: false,
            });
        }
        if self.eat_keyword("NIN") {
            return Ok(Expr::In {
                operand: left,
                list: self.list()?,
                negated: true,
            });
        }
        let op = match self.peek() {
            Some(Tok::Sym("=")) => CmpOp::Eq,
            Some(Tok::Sym("!=" | "<>")) => CmpOp::Ne,
            Some(Tok::Sym("<")) => CmpOp::Lt,
            Some(Tok::Sym("<=")) => CmpOp::Le,
            Some(Tok::Sym(">")) => CmpOp::Gt,
            Some(Tok::Sym(">=")) => CmpOp::Ge,
            _ => return self.fail("a comparison operator (=, !=, <>, <, <=, >, >=), IN or NIN"),
        };
        self.at += 1;
        let right = self.operand()?;
        Ok(Expr::Compare(op, left, right))
    }

    fn list(&mut self) -> Result<Vec<Value>, QueryError> {
        self.sym("[")?;
        let mut items = Vec::new();
        if self.eat_sym("]") {
            return Ok(items);
        }
        loop {
            match self.literal() {
                Some(v) => items.push(v),
                None => return self.fail("a literal"),
            }
            if self.eat_sym("]") {
                return Ok(items);
            }
            self.sym(",")?;
        }
    }

    fn literal(&mut self) -> Option<Value> {
        let v = match self.peek()? {
            Tok::Str(s) => Value::from(s.clone()),
            Tok::Num(n, text) => number(*n, text),
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
            Tok::Word(w) if w.eq_ignore_ascii_case("null") => Value::Null,
            _ => return None,
        };
        self.at += 1;
        Some(v)
    }

    fn operand(&mut self) -> Result<Operand, QueryError> {
        if let Some(v) = self.literal() {
            return Ok(Operand::Literal(v));
        }
        Ok(Operand::Path(self.path()?))
    }

    fn path(&mut self) -> Result<Path, QueryError> {
        let mut segments = vec![self.segment()?];
        while self.eat_sym(".") {
            segments.push(self.segment()?);
        }
        Ok(Path { segments })
    }

    fn segment(&mut self) -> Result<String, QueryError> {
        let s = match self.peek() {
            Some(Tok::Word(w)) => w.clone(),
            Some(Tok::Quoted(q)) => q.clone(),
            _ => return self.fail("a property name"),
        };
        self.at += 1;
        Ok(s)
    }
}

fn number(n: f64, text: &str) -> Value {
    text.parse::<i64>().map_or_else(
        |_| serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
        Value::from,
    )
}
