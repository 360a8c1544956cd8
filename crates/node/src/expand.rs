//! `$(VAR)` expansion exactly as kubelet does it for `command`, `args` and `env` values
//! (Kubernetes `third_party/forked/golang/expansion`): `$(NAME)` is replaced when `NAME` is
//! defined and left as written otherwise, `$$` is an escaped `$`, anything else stays.

/// Expands `$(VAR)` references in `input` with `lookup`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.extend_from_slice(&bytes[checkpoint..cursor]);
            let rest = &bytes[cursor + 1..];
            let advance = match rest[0] {
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest.iter().position(|&b| b == b')') {
                    Some(close) => {
                        let name = String::from_utf8_lossy(&rest[1..close]);
                        match lookup(&name) {
                            Some(value) => out.extend_from_slice(value.as_bytes()),
                            None => {
                                out.extend_from_slice(b"$(");
                                out.extend_from_slice(name.as_bytes());
                                out.push(b')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                other => {
                    out.push(b'$');
                    out.push(other);
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.extend_from_slice(&bytes[checkpoint.min(bytes.len())..]);
    // Only ASCII positions were split, so the bytes are the input's UTF-8 rearranged.
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "VAR_A" => Some("A".into()),
            "VAR_B" => Some("B".into()),
            "VAR_EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    // Cases from Kubernetes' expansion_test.go.
    #[test]
    fn kubelet_expansion_cases_hold() {
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_A)bar", "foo\\Abar"),
            ("$(VAR_EMPTY)", ""),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
            ("$(VAR_A", "$(VAR_A"),
            ("$VAR_A)", "$VAR_A)"),
            ("${VAR_A}", "${VAR_A}"),
            ("$", "$"),
            ("$$", "$"),
            ("$()", "$()"),
            ("$(VAR_A)$", "A$"),
            ("é$(VAR_A)ü$", "éAü$"),
            ("$é", "$é"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, env), want, "input {input:?}");
        }
    }

    proptest! {
        #[test]
        fn text_without_dollar_is_unchanged(s in "[^$]{0,40}") {
            prop_assert_eq!(expand(&s, env), s);
        }

        #[test]
        fn undefined_references_are_kept(name in "[A-Z_]{1,10}") {
            let input = format!("x$(U{name})y");
            prop_assert_eq!(expand(&input, |_| None), input);
        }

        #[test]
        fn any_text_expands_without_panicking(s in ".{0,40}") {
            let _ = expand(&s, env);
        }
    }
}
