//! Splits query text into tokens, each with its character position.

use super::QueryError;

/// A token kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A bare word: keyword or path segment (keywords are matched case-insensitively later).
    Word(String),
    /// A `[[ … ]]` quoted path segment.
    Quoted(String),
    /// A string literal.
    Str(String),
    /// A number literal.
    Num(f64, String),
    /// Punctuation or operator: `*`, `,`, `.`, `(`, `)`, `[`, `]`, `=`, `!=`, `<>`, `<`, `<=`, `>`, `>=`.
    Sym(&'static str),
}

/// A token and where it starts (0-based character offset).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    /// Kind and text.
    pub tok: Tok,
    /// Character offset of the first character.
    pub pos: usize,
}

/// Tokenises `input`.
pub(crate) fn lex(input: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = if c == '\'' || c == '"' {
            let (s, next) = string(&chars, i, c)?;
            i = next;
            Tok::Str(s)
        } else if c == '[' && chars.get(i + 1) == Some(&'[') {
            let close = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == ']' && chars[j + 1] == ']')
                .ok_or_else(|| {
                    QueryError::new(start, "an unterminated [[ ]] segment", "end of input")
                })?;
            let s: String = chars[i + 2..close].iter().collect();
            i = close + 2;
            Tok::Quoted(s)
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_digit() || matches!(chars[i], '.' | 'e' | 'E'))
                || (i < chars.len()
                    && matches!(chars[i], '+' | '-')
                    && matches!(chars[i - 1], 'e' | 'E'))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let n = text
                .parse::<f64>()
                .map_err(|_| QueryError::new(start, "a number", &format!("{text:?}")))?;
            Tok::Num(n, text)
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$' | '-'))
            {
                i += 1;
            }
            Tok::Word(chars[start..i].iter().collect())
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = match two.as_str() {
                "!=" => Some("!="),
                "<>" => Some("<>"),
                "<=" => Some("<="),
                ">=" => Some(">="),
                _ => None,
            };
            if let Some(s) = sym {
                i += 2;
                Tok::Sym(s)
            } else {
                i += 1;
                Tok::Sym(match c {
                    '*' => "*",
                    ',' => ",",
                    '.' => ".",
                    '(' => "(",
                    ')' => ")",
                    '[' => "[",
                    ']' => "]",
                    '=' => "=",
                    '<' => "<",
                    '>' => ">",
                    other => {
                        return Err(QueryError::new(start, "a token", &format!("{other:?}")));
                    }
                })
            }
        };
        out.push(Token { tok, pos: start });
    }
    Ok(out)
}

/// Reads a quoted string starting at `start`; a doubled quote stands for itself.
fn string(chars: &[char], start: usize, quote: char) -> Result<(String, usize), QueryError> {
    let mut s = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => return Err(QueryError::new(start, "a closing quote", "end of input")),
            Some(&c) if c == quote && chars.get(i + 1) == Some(&quote) => {
                s.push(quote);
                i += 2;
            }
            Some(&c) if c == quote => return Ok((s, i + 1)),
            Some(&c) => {
                s.push(c);
                i += 1;
            }
        }
    }
}
