//! Image → local executable mapping. There are no images on this node: each container image is
//! matched against rules that say which local program plays the image's `ENTRYPOINT`/`CMD`, how
//! the container's own `command[0]` values translate to local programs, and which `ENV` and
//! `WORKDIR` the image would have set.
//!
//! File format (YAML, `--image-map FILE`); the first matching rule wins, file rules before the
//! built-in ones:
//!
//! ```yaml
//! images:
//!   - match: "*/tempsensor:*"          # glob (`*`, `?`) on the image reference; a reference
//!                                      # without tag or digest is matched as `NAME:latest`
//!     entrypoint: ["/opt/sensor/bin/tempsensor"]   # the image's ENTRYPOINT
//!     cmd: ["--interval", "1s"]        # the image's CMD (default arguments)
//!     commands:                        # container `command[0]` → local program
//!       tempsensor: /opt/sensor/bin/tempsensor
//!     hostCommands: false              # true: other commands run as host programs
//!     env: {RUST_LOG: info}            # the image's ENV (the container's env wins)
//!     workingDir: /opt/sensor          # the image's WORKDIR
//!   - match: "python:3*"
//!     entrypoint: ["/opt/venv/bin/python3"]
//!     commands: {python: /opt/venv/bin/python3, python3: /opt/venv/bin/python3}
//! ```
//!
//! Built-in rules (after the file's): `ironedge:*` and `*/ironedge:*` run the `ironedge` binary
//! itself; `*/ironedge-NAME:*` and `ironedge-NAME:*` run an executable `ironedge-NAME` next to it
//! (sample modules); `busybox`, `alpine`, `debian` and `ubuntu` run host programs with `/bin/sh`
//! as default command.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ConfigError, Error, Result};

/// One mapping rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageRule {
    /// Glob on the image reference.
    #[serde(rename = "match")]
    pub pattern: String,
    /// The image's ENTRYPOINT as a local program and its arguments.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// The image's CMD.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// Container `command[0]` values and the local programs they run.
    #[serde(default)]
    pub commands: BTreeMap<String, String>,
    /// Whether commands not listed in `commands` run as host programs unchanged.
    #[serde(default)]
    pub host_commands: bool,
    /// The image's ENV.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The image's WORKDIR.
    #[serde(default)]
    pub working_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageMapFile {
    images: Vec<ImageRule>,
}

/// The ordered rule list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageMap {
    rules: Vec<ImageRule>,
    /// Directory searched for `ironedge-NAME` sample-module executables.
    sibling_dir: Option<PathBuf>,
}

/// What a container runs, resolved through the image map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// Program and arguments, before `$(VAR)` expansion of the container's own parts.
    pub argv: Vec<String>,
    /// Index of the first `argv` item that came from the container spec (`command`/`args`) and so
    /// gets `$(VAR)` expansion; `usize::MAX` when everything came from the image's defaults.
    pub expand_from: usize,
    /// The image's ENV.
    pub env: BTreeMap<String, String>,
    /// The image's WORKDIR.
    pub working_dir: Option<String>,
}

impl ImageMap {
    /// Parses a YAML image map; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self> {
        let file: ImageMapFile = serde_norway::from_str(text).map_err(|e| Error::ImageMap {
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
        for (i, rule) in file.images.iter().enumerate() {
            let reason = if rule.pattern.trim().is_empty() {
                Some("`match` is empty")
            } else if rule.entrypoint.is_empty() && rule.commands.is_empty() && !rule.host_commands
            {
                Some("give `entrypoint`, `commands` or `hostCommands: true`")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(Error::ImageMap {
                    origin: origin.to_string(),
                    reason: format!("images[{i}] ({:?}): {reason}", rule.pattern),
                });
            }
        }
        Ok(Self {
            rules: file.images,
            sibling_dir: None,
        })
    }

    /// One rule from the `PATTERN=PROGRAM` shorthand (`--map-image`): the program is both the
    /// entrypoint and what a command of the same file name runs.
    pub fn shorthand(spec: &str) -> Result<ImageRule> {
        let (pattern, program) = spec.split_once('=').ok_or_else(|| Error::Invalid {
            what: "--map-image",
            value: spec.to_string(),
            reason: "expected PATTERN=PROGRAM".into(),
        })?;
        if pattern.is_empty() || program.is_empty() {
            return Err(Error::Invalid {
                what: "--map-image",
                value: spec.to_string(),
                reason: "pattern and program must not be empty".into(),
            });
        }
        Ok(program_rule(pattern, Path::new(program)))
    }

    /// The built-in rules for the `ironedge` binary at `ironedge`, its sibling sample modules and
    /// shell images.
    pub fn builtin(ironedge: &Path) -> Self {
        let mut rules = vec![
            program_rule("ironedge:*", ironedge),
            program_rule("*/ironedge:*", ironedge),
        ];
        for shell in ["busybox", "alpine", "debian", "ubuntu"] {
            for pattern in [format!("{shell}:*"), format!("*/{shell}:*")] {
                rules.push(ImageRule {
                    pattern,
                    entrypoint: Vec::new(),
                    cmd: vec!["/bin/sh".into()],
                    commands: BTreeMap::new(),
                    host_commands: true,
                    env: BTreeMap::new(),
                    working_dir: None,
                });
            }
        }
        Self {
            rules,
            sibling_dir: ironedge.parent().map(Path::to_path_buf),
        }
    }

    /// This map's rules first, then `later`'s.
    pub fn then(mut self, later: ImageMap) -> Self {
        self.rules.extend(later.rules);
        self.sibling_dir = self.sibling_dir.or(later.sibling_dir);
        self
    }

    /// Adds a rule before all others.
    pub fn prepend(&mut self, rule: ImageRule) {
        self.rules.insert(0, rule);
    }

    /// The rule for `image`, if any.
    pub fn rule_for(&self, image: &str) -> Option<ImageRule> {
        let reference = normalise(image);
        if let Some(rule) = self
            .rules
            .iter()
            .find(|r| glob_match(&r.pattern, &reference))
        {
            return Some(rule.clone());
        }
        let name = repository_name(&reference);
        let dir = self.sibling_dir.as_ref()?;
        if name.starts_with("ironedge-") && name.len() > "ironedge-".len() {
            let program = dir.join(name);
            if program.is_file() {
                return Some(program_rule(&reference, &program));
            }
        }
        None
    }

    /// Resolves what a container with `image`, `command` and `args` runs (Docker semantics:
    /// `command` replaces ENTRYPOINT, `args` replaces CMD, and setting `command` drops CMD).
    pub fn resolve(
        &self,
        image: &str,
        command: &[String],
        args: &[String],
    ) -> Result<ResolvedImage, ConfigError> {
        let rule = self
            .rule_for(image)
            .ok_or_else(|| ConfigError::ImageNotMapped(image.to_string()))?;
        let (mut argv, expand_from) = if !command.is_empty() {
            let mut argv = command.to_vec();
            argv.extend_from_slice(args);
            (argv, 0)
        } else {
            let mut argv = rule.entrypoint.clone();
            let from_spec = argv.len();
            if args.is_empty() {
                argv.extend(rule.cmd.iter().cloned());
                (argv, usize::MAX)
            } else {
                argv.extend_from_slice(args);
                (argv, from_spec)
            }
        };
        let Some(first) = argv.first().cloned() else {
            return Err(ConfigError::NoCommand(image.to_string()));
        };
        let from_image = command.is_empty() && !rule.entrypoint.is_empty();
        if let Some(program) = rule.commands.get(&first) {
            argv[0] = program.clone();
        } else if !from_image && !rule.host_commands {
            return Err(ConfigError::CommandNotMapped {
                image: image.to_string(),
                command: first,
            });
        }
        Ok(ResolvedImage {
            argv,
            expand_from,
            env: rule.env,
            working_dir: rule.working_dir,
        })
    }
}

/// A rule running `program` as ENTRYPOINT, also for commands named like it or installed under
/// the usual image paths.
fn program_rule(pattern: &str, program: &Path) -> ImageRule {
    let program_str = program.to_string_lossy().into_owned();
    let mut commands = BTreeMap::new();
    if let Some(file) = program
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
    {
        for dir in ["", "/", "/usr/local/bin/", "/usr/bin/", "/app/", "/bin/"] {
            commands.insert(format!("{dir}{file}"), program_str.clone());
        }
    }
    commands.insert(program_str.clone(), program_str.clone());
    ImageRule {
        pattern: pattern.to_string(),
        entrypoint: vec![program_str],
        cmd: Vec::new(),
        commands,
        host_commands: false,
        env: BTreeMap::new(),
        working_dir: None,
    }
}

/// `NAME` → `NAME:latest`; references with a tag or digest stay as they are.
fn normalise(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || last.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// The last path segment of a reference without tag or digest.
fn repository_name(reference: &str) -> &str {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    let end = last.find(['@', ':']).unwrap_or(last.len());
    &last[..end]
}

/// Glob matching with `*` (any run, including `/`) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn builtin() -> ImageMap {
        ImageMap::builtin(Path::new("/opt/ironedge/bin/ironedge"))
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ironedge_images_run_the_ironedge_binary_with_the_containers_args() {
        let r = builtin()
            .resolve(
                "ghcr.io/ironedge/ironedge:0.1.0",
                &[],
                &s(&["agent", "--x"]),
            )
            .unwrap();
        assert_eq!(r.argv, s(&["/opt/ironedge/bin/ironedge", "agent", "--x"]));
        assert_eq!(r.expand_from, 1);
        let r = builtin()
            .resolve("ironedge", &s(&["ironedge", "edgehub"]), &[])
            .unwrap();
        assert_eq!(r.argv, s(&["/opt/ironedge/bin/ironedge", "edgehub"]));
        let r = builtin()
            .resolve(
                "ironedge:1",
                &s(&["/usr/local/bin/ironedge"]),
                &s(&["agent"]),
            )
            .unwrap();
        assert_eq!(r.argv, s(&["/opt/ironedge/bin/ironedge", "agent"]));
    }

    #[test]
    fn unknown_commands_of_mapped_images_are_refused_with_a_hint() {
        let err = builtin()
            .resolve("ironedge:1", &s(&["/bin/bash"]), &[])
            .unwrap_err();
        assert!(err.to_string().contains("commands"), "{err}");
        let err = builtin().resolve("nginx:1.25", &[], &[]).unwrap_err();
        assert_eq!(err, ConfigError::ImageNotMapped("nginx:1.25".into()));
    }

    #[test]
    fn shell_images_run_host_programs_and_default_to_sh() {
        let r = builtin()
            .resolve("busybox:1.36", &s(&["/bin/sh", "-c", "echo hi"]), &[])
            .unwrap();
        assert_eq!(r.argv, s(&["/bin/sh", "-c", "echo hi"]));
        assert_eq!(r.expand_from, 0);
        let r = builtin()
            .resolve("docker.io/library/alpine", &[], &[])
            .unwrap();
        assert_eq!(r.argv, s(&["/bin/sh"]));
        assert_eq!(r.expand_from, usize::MAX);
    }

    #[test]
    fn file_rules_come_before_builtins_and_carry_env_and_workdir() {
        let file = ImageMap::from_yaml(
            "images:\n- match: 'python:3*'\n  entrypoint: [/venv/bin/python3]\n  commands: {python3: /venv/bin/python3}\n  env: {PYTHONUNBUFFERED: '1'}\n  workingDir: /app\n",
            "t.yaml",
        )
        .unwrap();
        let map = file.then(builtin());
        let r = map
            .resolve("python:3.11-slim", &s(&["python3", "main.py"]), &[])
            .unwrap();
        assert_eq!(r.argv, s(&["/venv/bin/python3", "main.py"]));
        assert_eq!(r.env["PYTHONUNBUFFERED"], "1");
        assert_eq!(r.working_dir.as_deref(), Some("/app"));
        assert!(map.rule_for("ironedge:1").is_some());
    }

    #[test]
    fn sample_module_images_run_a_sibling_executable() {
        let dir = tempfile::tempdir().unwrap();
        let sensor = dir.path().join("ironedge-tempsensor");
        std::fs::write(&sensor, "#!/bin/sh\n").unwrap();
        let map = ImageMap::builtin(&dir.path().join("ironedge"));
        let r = map
            .resolve("ghcr.io/ironedge/ironedge-tempsensor:0.1", &[], &[])
            .unwrap();
        assert_eq!(r.argv, vec![sensor.to_string_lossy().into_owned()]);
        assert!(
            map.rule_for("ghcr.io/ironedge/ironedge-missing:0.1")
                .is_none()
        );
    }

    #[test]
    fn bad_image_map_files_name_the_entry() {
        let err = ImageMap::from_yaml("images:\n- match: 'x:*'\n", "m.yaml").unwrap_err();
        assert!(
            err.to_string().contains("m.yaml") && err.to_string().contains("images[0]"),
            "{err}"
        );
        let err = ImageMap::from_yaml("images:\n- match: 'x'\n  bogus: 1\n", "m.yaml").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn shorthand_maps_pattern_to_program() {
        let rule = ImageMap::shorthand("*/filter:*=/opt/filter").unwrap();
        assert_eq!(rule.entrypoint, s(&["/opt/filter"]));
        assert_eq!(rule.commands["filter"], "/opt/filter");
        assert!(ImageMap::shorthand("nopattern").is_err());
    }

    #[test]
    fn globs_match_like_shell_patterns() {
        assert!(glob_match("*/ironedge:*", "ghcr.io/a/ironedge:1"));
        assert!(!glob_match("*/ironedge:*", "ironedge:1"));
        assert!(glob_match("ironedge:*", "ironedge:latest"));
        assert!(glob_match("py?hon:3*", "python:3.11"));
        assert!(!glob_match("python:3*", "python:2.7"));
    }

    proptest! {
        #[test]
        fn a_literal_pattern_matches_exactly_itself(a in "[a-z:/.]{0,12}", b in "[a-z:/.]{0,12}") {
            prop_assert_eq!(glob_match(&a, &b), a == b);
        }

        #[test]
        fn star_matches_everything(t in ".{0,20}") {
            prop_assert!(glob_match("*", &t));
        }
    }
}
