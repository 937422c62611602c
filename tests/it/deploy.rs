//! The deployment files stay true as flags change: every msgcapi command line in the
//! Dockerfile, the Kubernetes manifest and the Airflow DAG under docs/deploy/ uses only
//! subcommands and flags that the real binary's `--help` lists.
//!
//! Command lines are found the way each file is run: the Dockerfile's `RUN`, `ENTRYPOINT` and
//! `CMD` (exec form as JSON, shell form through a small shell word splitter); in YAML, each
//! container's `command` + `args` (the image's entrypoint, msgcapi, when an msgcapi image has no
//! `command`), with `sh -c` scripts split like a shell; in Python, every list literal whose first
//! element is `msgcapi` or one of its subcommands (`arguments=[...]` of a pod operator), and
//! shell command lines in string literals (`bash_command`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::util;

const DOCKERFILE: &str = "Dockerfile";
const KUBERNETES: &str = "docs/deploy/kubernetes-cronjob.yaml";
const AIRFLOW: &str = "docs/deploy/airflow_dag.py";

/// One msgcapi command line found in a file: the words after the program name.
#[derive(Debug, Clone, PartialEq)]
struct Invocation {
    origin: String,
    args: Vec<String>,
}

impl Invocation {
    fn new(origin: &str, args: &[String]) -> Invocation {
        Invocation {
            origin: origin.to_string(),
            args: args.to_vec(),
        }
    }

    /// The value given to `flag` (`--flag VALUE` or `--flag=VALUE`), if any.
    fn value_of(&self, flag: &str) -> Option<&str> {
        let mut it = self.args.iter();
        while let Some(a) = it.next() {
            if a == flag {
                return it.next().map(String::as_str);
            }
            if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                return Some(v);
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// What the binary accepts, from its own --help.

/// One command level (`msgcapi`, `msgcapi send`, `msgcapi state stats`): its flags, each with
/// whether it takes a value, and its subcommands.
#[derive(Debug, Default, Clone)]
struct Level {
    flags: BTreeMap<String, bool>,
    subcommands: BTreeSet<String>,
}

/// Reads clap's help: option lines (`  -q, --quiet`, `      --mapping <FILE>`) are indented
/// 2 to 6 columns (descriptions and possible values 10), subcommands are listed under
/// `Commands:`.
fn parse_help(text: &str) -> Level {
    let mut level = Level::default();
    let mut in_commands = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent == 0 {
            in_commands = trimmed == "Commands:";
            continue;
        }
        if in_commands && indent == 2 {
            if let Some(name) = trimmed.split_whitespace().next() {
                level.subcommands.insert(name.to_string());
            }
            continue;
        }
        if indent <= 6 && trimmed.starts_with('-') {
            // `-q, --quiet  No summary` (short help) or `--state <FILE>` (long help).
            let spec = trimmed.split("  ").next().unwrap_or(trimmed);
            let takes_value = spec.contains(" <") || (spec.contains("=<") && !spec.contains("[="));
            for piece in spec.split(", ") {
                let name: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                if name.len() > 1 {
                    level.flags.insert(name, takes_value);
                }
            }
        }
    }
    level
}

/// The real binary's command tree, one `--help` per level, read when first needed.
struct Cli {
    levels: RefCell<BTreeMap<Vec<String>, Level>>,
}

impl Cli {
    fn new() -> Cli {
        Cli {
            levels: RefCell::new(BTreeMap::new()),
        }
    }

    fn level(&self, path: &[String]) -> Level {
        if let Some(l) = self.levels.borrow().get(path) {
            return l.clone();
        }
        let out = Command::new(util::bin())
            .env_clear()
            .args(path)
            .arg("--help")
            .output()
            .expect("run msgcapi --help");
        assert!(
            out.status.success(),
            "msgcapi {} --help: {}",
            path.join(" "),
            util::stderr(&out)
        );
        let level = parse_help(&String::from_utf8_lossy(&out.stdout));
        assert!(
            level.flags.contains_key("--help"),
            "could not read `msgcapi {} --help`",
            path.join(" ")
        );
        self.levels
            .borrow_mut()
            .insert(path.to_vec(), level.clone());
        level
    }

    fn subcommands(&self) -> BTreeSet<String> {
        self.level(&[]).subcommands
    }

    /// Every problem of one command line: a flag its (sub)command does not have, a subcommand
    /// that does not exist. Flag values and inputs are not checked.
    fn check(&self, inv: &Invocation) -> Vec<String> {
        let mut problems = Vec::new();
        let mut path: Vec<String> = Vec::new();
        let mut level = self.level(&path);
        let mut args = inv.args.iter();
        while let Some(a) = args.next() {
            if a == "--" {
                break;
            }
            let flags = flag_names(a);
            if flags.is_empty() {
                if level.subcommands.is_empty() {
                    continue; // an input, or the operand of `state export FILE`
                }
                if level.subcommands.contains(a) {
                    path.push(a.clone());
                    level = self.level(&path);
                    continue;
                }
                problems.push(format!(
                    "{}: `{}` has no subcommand `{a}`",
                    inv.origin,
                    command_name(&path)
                ));
                break;
            }
            let inline_value = a.starts_with("--") && a.contains('=');
            for (i, flag) in flags.iter().enumerate() {
                match level.flags.get(flag) {
                    Some(true) => {
                        // `--state FILE`, `-xVALUE`: the value is the next word, or the rest.
                        if !inline_value && (a.starts_with("--") || i + 1 == flags.len()) {
                            args.next();
                        }
                        break;
                    }
                    Some(false) => {}
                    None => problems.push(format!(
                        "{}: `{}` has no flag `{flag}` (in `msgcapi {}`)",
                        inv.origin,
                        command_name(&path),
                        inv.args.join(" ")
                    )),
                }
            }
        }
        problems
    }
}

/// `msgcapi`, `msgcapi send`, `msgcapi state stats`.
fn command_name(path: &[String]) -> String {
    std::iter::once("msgcapi")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `--flag` and `--flag=value` give `--flag`; `-qV` gives `-q`, `-V`; values (`-`, `-1`,
/// `s3://...`) give nothing.
fn flag_names(word: &str) -> Vec<String> {
    if let Some(long) = word.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or("");
        return if name.is_empty() {
            Vec::new()
        } else {
            vec![format!("--{name}")]
        };
    }
    match word.strip_prefix('-') {
        Some(short) if short.starts_with(|c: char| c.is_ascii_alphabetic()) => {
            short.chars().map(|c| format!("-{c}")).collect()
        }
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Shell: enough of the POSIX word rules for command lines in scripts.

/// Splits a script into simple commands, each a list of words with quotes removed. Handles
/// single and double quotes, backslashes and line continuations, `$(...)`, `${...}` and
/// backquotes (kept as text in the word), comments, `;` `&` `|` `(` `)` and newlines between
/// commands, and redirections (dropped with their target).
fn shell_commands(script: &str) -> Vec<Vec<String>> {
    struct Splitter {
        commands: Vec<Vec<String>>,
        words: Vec<String>,
        word: String,
        in_word: bool,
        drop_next_word: bool,
    }
    impl Splitter {
        fn end_word(&mut self) {
            if self.in_word {
                let w = std::mem::take(&mut self.word);
                if self.drop_next_word {
                    self.drop_next_word = false;
                } else {
                    self.words.push(w);
                }
                self.in_word = false;
            }
        }
        fn end_command(&mut self) {
            self.end_word();
            if !self.words.is_empty() {
                self.commands.push(std::mem::take(&mut self.words));
            }
        }
    }
    /// Copies `$(...)`, `${...}` from `i` (at `$`) into `out`; returns the index after it.
    fn copy_expansion(c: &[char], mut i: usize, out: &mut String) -> usize {
        let (open, close) = if c.get(i + 1) == Some(&'{') {
            ('{', '}')
        } else {
            ('(', ')')
        };
        let mut depth = 0usize;
        while i < c.len() {
            out.push(c[i]);
            if c[i] == open {
                depth += 1;
            } else if c[i] == close {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            i += 1;
        }
        i
    }

    let c: Vec<char> = script.chars().collect();
    let mut s = Splitter {
        commands: Vec::new(),
        words: Vec::new(),
        word: String::new(),
        in_word: false,
        drop_next_word: false,
    };
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        match c[i] {
            '\\' => {
                match next {
                    Some('\n') => {}
                    Some(n) => {
                        s.word.push(n);
                        s.in_word = true;
                    }
                    None => {}
                }
                i += 2;
            }
            '\'' => {
                s.in_word = true;
                i += 1;
                while i < c.len() && c[i] != '\'' {
                    s.word.push(c[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                s.in_word = true;
                i += 1;
                while i < c.len() && c[i] != '"' {
                    if c[i] == '\\' && matches!(c.get(i + 1), Some('"' | '\\' | '$' | '`' | '\n')) {
                        if c[i + 1] != '\n' {
                            s.word.push(c[i + 1]);
                        }
                        i += 2;
                    } else if c[i] == '$' && matches!(c.get(i + 1), Some('(' | '{')) {
                        i = copy_expansion(&c, i, &mut s.word);
                    } else {
                        s.word.push(c[i]);
                        i += 1;
                    }
                }
                i += 1;
            }
            '$' if matches!(next, Some('(' | '{')) => {
                s.in_word = true;
                i = copy_expansion(&c, i, &mut s.word);
            }
            '`' => {
                s.in_word = true;
                s.word.push('`');
                i += 1;
                while i < c.len() && c[i] != '`' {
                    s.word.push(c[i]);
                    i += 1;
                }
                s.word.push('`');
                i += 1;
            }
            '#' if !s.in_word => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            ' ' | '\t' => {
                s.end_word();
                i += 1;
            }
            '\n' | ';' | '&' | '|' | '(' | ')' => {
                s.end_command();
                i += 1;
            }
            '<' | '>' => {
                // `2>&1`, `> file`, `>> file`, `< file`: neither the fd nor the target is an
                // argument.
                if s.in_word && s.word.chars().all(|ch| ch.is_ascii_digit()) {
                    s.word.clear();
                    s.in_word = false;
                } else {
                    s.end_word();
                }
                i += 1;
                while i < c.len() && matches!(c[i], '>' | '<' | '&') {
                    i += 1;
                }
                s.drop_next_word = true;
            }
            ch => {
                s.word.push(ch);
                s.in_word = true;
                i += 1;
            }
        }
    }
    s.end_command();
    s.commands
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// The msgcapi commands of a shell script.
fn shell_invocations(script: &str, origin: &str) -> Vec<Invocation> {
    let mut found = Vec::new();
    for words in shell_commands(script) {
        // Skip `VAR=value` prefixes and words that run the next one (`exec msgcapi ...`).
        let start = words.iter().position(|w| {
            !is_assignment(w)
                && !matches!(
                    w.as_str(),
                    "exec"
                        | "command"
                        | "time"
                        | "nohup"
                        | "env"
                        | "if"
                        | "then"
                        | "else"
                        | "elif"
                        | "do"
                        | "while"
                        | "until"
                        | "!"
                        | "{"
                )
        });
        if let Some(start) = start
            && basename(&words[start]) == "msgcapi"
        {
            found.push(Invocation::new(origin, &words[start + 1..]));
        }
    }
    found
}

/// An argv as a container or `RUN` runs it: msgcapi itself, or a shell given `-c SCRIPT`.
fn argv_invocations(argv: &[String], origin: &str) -> Vec<Invocation> {
    let Some(program) = argv.first() else {
        return Vec::new();
    };
    match basename(program) {
        "msgcapi" => vec![Invocation::new(origin, &argv[1..])],
        "sh" | "bash" | "dash" | "ash" => {
            // `sh -c SCRIPT`, `sh -euc SCRIPT`: the script is the first operand after them.
            let c_flag = argv[1..]
                .iter()
                .position(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('c'));
            match c_flag.and_then(|p| argv.get(p + 2)) {
                Some(script) => shell_invocations(script, origin),
                None => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Dockerfile.

/// `RUN` (both forms), and per stage the `ENTRYPOINT` with its `CMD` when the entrypoint is
/// msgcapi. Other instructions (`COPY .../msgcapi ...`) run nothing.
fn dockerfile_invocations(text: &str, origin: &str) -> Vec<Invocation> {
    // Instructions: continuation lines joined, comment lines dropped.
    let mut instructions: Vec<(usize, String)> = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (start, mut body) = current.take().unwrap_or((n + 1, String::new()));
        match t.strip_suffix('\\') {
            Some(head) => {
                // Docker joins the lines: the backslash and the line break are gone.
                body.push_str(head);
                body.push(' ');
                current = Some((start, body));
            }
            None => {
                body.push_str(t);
                instructions.push((start, body));
            }
        }
    }
    if let Some(last) = current {
        instructions.push(last);
    }

    /// Exec form (a JSON array) or shell form (`/bin/sh -c` the text).
    fn argv_of(rest: &str) -> Vec<String> {
        if rest.starts_with('[')
            && let Ok(v) = serde_json::from_str::<Vec<String>>(rest)
        {
            return v;
        }
        vec!["/bin/sh".into(), "-c".into(), rest.to_string()]
    }

    /// A stage's ENTRYPOINT runs with its CMD as arguments.
    type Stage = (Option<Vec<String>>, Option<Vec<String>>);
    fn end_stage(stage: &mut Stage, found: &mut Vec<Invocation>, origin: &str) {
        if let (Some(entrypoint), cmd) = std::mem::take(stage) {
            let mut argv = entrypoint;
            argv.extend(cmd.unwrap_or_default());
            found.extend(argv_invocations(
                &argv,
                &format!("{origin}: ENTRYPOINT and CMD"),
            ));
        }
    }

    let mut found = Vec::new();
    let mut stage: Stage = (None, None);
    for (line, instruction) in &instructions {
        let (keyword, rest) = instruction
            .split_once(char::is_whitespace)
            .unwrap_or((instruction, ""));
        let rest = rest.trim();
        let at = format!("{origin}:{line}");
        match keyword.to_ascii_uppercase().as_str() {
            "FROM" => end_stage(&mut stage, &mut found, origin),
            "RUN" => {
                // `RUN --mount=... --network=... command`: the options are RUN's.
                let mut command = rest;
                while command.starts_with("--") {
                    command = command
                        .split_once(char::is_whitespace)
                        .map_or("", |(_, r)| r.trim_start());
                }
                found.extend(argv_invocations(&argv_of(command), &at));
            }
            "ENTRYPOINT" => stage = (Some(argv_of(rest)), None),
            "CMD" => stage.1 = Some(argv_of(rest)),
            _ => {}
        }
    }
    end_stage(&mut stage, &mut found, origin);
    found
}

// ---------------------------------------------------------------------------------------------
// Kubernetes YAML.

/// Every container (and init container) of every document: `command` + `args`; without a
/// `command`, an image named msgcapi runs its entrypoint, msgcapi, with `args`.
fn kubernetes_invocations(text: &str, origin: &str) -> Vec<Invocation> {
    yaml_documents(text, origin)
        .iter()
        .flat_map(|doc| container_invocations(doc, origin))
        .collect()
}

fn yaml_documents(text: &str, origin: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{origin}: {e}"))
}

/// The containers' command lines anywhere in one document (or a part of it).
fn container_invocations(doc: &serde_json::Value, origin: &str) -> Vec<Invocation> {
    let mut found = Vec::new();
    visit_containers(doc, &mut |container| {
        let strings = |key: &str| -> Option<Vec<String>> {
            container.get(key).map(|v| {
                v.as_array()
                    .unwrap_or_else(|| panic!("{origin}: `{key}` is not a list"))
                    .iter()
                    .map(|s| match s {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
        };
        let name = container["name"].as_str().unwrap_or("?");
        let image = container["image"].as_str().unwrap_or("");
        // registry:5000/team/msgcapi:1.0@sha256:... -> msgcapi
        let image_name = basename(image.split('@').next().unwrap_or(""))
            .split(':')
            .next()
            .unwrap_or("");
        let args = strings("args");
        let argv = match (strings("command"), args) {
            (Some(mut command), args) => {
                command.extend(args.unwrap_or_default());
                command
            }
            (None, Some(args)) if image_name.contains("msgcapi") => {
                let mut argv = vec!["msgcapi".to_string()];
                argv.extend(args);
                argv
            }
            (None, _) => return,
        };
        found.extend(argv_invocations(
            &argv,
            &format!("{origin}: container `{name}`"),
        ));
    });
    found
}

fn visit_containers(v: &serde_json::Value, f: &mut dyn FnMut(&serde_json::Value)) {
    match v {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                if key == "containers" || key == "initContainers" {
                    for c in value.as_array().into_iter().flatten() {
                        f(c);
                    }
                } else {
                    visit_containers(value, f);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| visit_containers(i, f)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Python.

#[derive(Debug, Clone, PartialEq)]
enum PyToken {
    /// A string literal's text (f-strings as written, `{...}` included); adjacent literals
    /// are joined, as Python does.
    Str(String),
    Open(char),
    Close(char),
    Comma,
    /// A name, number or operator.
    Other,
}

fn python_tokens(src: &str) -> Vec<PyToken> {
    let c: Vec<char> = src.chars().collect();
    let mut tokens: Vec<PyToken> = Vec::new();
    let mut i = 0;
    let push_str = |tokens: &mut Vec<PyToken>, text: String| match tokens.last_mut() {
        Some(PyToken::Str(prev)) => prev.push_str(&text),
        _ => tokens.push(PyToken::Str(text)),
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '#' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if ch.is_whitespace() || ch == '\\' {
            i += 1;
            continue;
        }
        // A name, which may be a string prefix (r, b, f, u, rb, fr, ...).
        if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let name: String = c[start..i].iter().collect();
            let is_prefix = name.len() <= 2
                && name.chars().all(|p| "rRbBfFuU".contains(p))
                && matches!(c.get(i), Some('\'' | '"'));
            if !is_prefix {
                tokens.push(PyToken::Other);
                continue;
            }
            let raw = name.contains(['r', 'R']);
            let (text, end) = python_string(&c, i, raw);
            push_str(&mut tokens, text);
            i = end;
            continue;
        }
        match ch {
            '\'' | '"' => {
                let (text, end) = python_string(&c, i, false);
                push_str(&mut tokens, text);
                i = end;
            }
            '[' | '(' | '{' => {
                tokens.push(PyToken::Open(ch));
                i += 1;
            }
            ']' | ')' | '}' => {
                tokens.push(PyToken::Close(ch));
                i += 1;
            }
            ',' => {
                tokens.push(PyToken::Comma);
                i += 1;
            }
            _ => {
                tokens.push(PyToken::Other);
                i += 1;
            }
        }
    }
    tokens
}

/// The string literal whose opening quote is at `i`: its text and the index after it.
fn python_string(c: &[char], mut i: usize, raw: bool) -> (String, usize) {
    let q = c[i];
    let triple = c.get(i + 1) == Some(&q) && c.get(i + 2) == Some(&q);
    i += if triple { 3 } else { 1 };
    let mut text = String::new();
    while i < c.len() {
        if c[i] == '\\' && i + 1 < c.len() {
            let e = c[i + 1];
            if raw {
                text.push('\\');
                text.push(e);
            } else {
                match e {
                    '\n' => {}
                    'n' => text.push('\n'),
                    't' => text.push('\t'),
                    '\\' | '\'' | '"' => text.push(e),
                    _ => {
                        text.push('\\');
                        text.push(e);
                    }
                }
            }
            i += 2;
            continue;
        }
        if c[i] == q && (!triple || (c.get(i + 1) == Some(&q) && c.get(i + 2) == Some(&q))) {
            return (text, i + if triple { 3 } else { 1 });
        }
        if !triple && c[i] == '\n' {
            break; // unterminated: end it at the line's end
        }
        text.push(c[i]);
        i += 1;
    }
    (text, i)
}

/// Every list literal, as its top-level elements: the text of an element that is one string
/// literal, `None` for any other expression (a name, a call, `*rest`).
fn python_lists(tokens: &[PyToken]) -> Vec<Vec<Option<String>>> {
    let mut lists = Vec::new();
    for (start, t) in tokens.iter().enumerate() {
        if *t != PyToken::Open('[') {
            continue;
        }
        let mut elements = Vec::new();
        let mut element: Vec<&PyToken> = Vec::new();
        let mut depth = 0usize;
        for t in &tokens[start + 1..] {
            match t {
                PyToken::Open(_) => depth += 1,
                PyToken::Close(_) if depth == 0 => break,
                PyToken::Close(_) => depth -= 1,
                PyToken::Comma if depth == 0 => {
                    elements.push(std::mem::take(&mut element));
                    continue;
                }
                _ => {}
            }
            element.push(t);
        }
        if !element.is_empty() {
            elements.push(element);
        }
        lists.push(
            elements
                .into_iter()
                .map(|e| match e.as_slice() {
                    [PyToken::Str(s)] => Some(s.clone()),
                    _ => None,
                })
                .collect(),
        );
    }
    lists
}

/// Argument lists (`["send", "--mapping", ...]`, `["msgcapi", "send", ...]`) and shell
/// command lines in strings (`bash_command="msgcapi send ..."`). An expression that is not a
/// literal stands as the word `<expr>`: a flag's value, never a flag. A string is taken as
/// a shell command line only where msgcapi is followed by a subcommand or a flag, so prose
/// that names msgcapi is not.
fn python_invocations(src: &str, origin: &str, subcommands: &BTreeSet<String>) -> Vec<Invocation> {
    let tokens = python_tokens(src);
    let mut found = Vec::new();
    for list in python_lists(&tokens) {
        let words: Vec<String> = list
            .iter()
            .map(|e| e.clone().unwrap_or_else(|| "<expr>".into()))
            .collect();
        match list.first() {
            // (`tags=["msgcapi"]` has nothing to check.)
            Some(Some(first)) if basename(first) == "msgcapi" && words.len() > 1 => {
                found.push(Invocation::new(&format!("{origin}: list"), &words[1..]));
            }
            Some(Some(first)) if subcommands.contains(first) => {
                found.push(Invocation::new(&format!("{origin}: list"), &words));
            }
            _ => {}
        }
    }
    for t in &tokens {
        if let PyToken::Str(s) = t {
            found.extend(
                shell_invocations(s, &format!("{origin}: string"))
                    .into_iter()
                    .filter(|inv| {
                        inv.args
                            .first()
                            .is_some_and(|a| a.starts_with('-') || subcommands.contains(a))
                    }),
            );
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// The checks.

fn read(rel: &str) -> String {
    std::fs::read_to_string(util::root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// The command lines of one deployment file, by its kind.
fn invocations_of(rel: &str, text: &str, cli: &Cli) -> Vec<Invocation> {
    if rel.ends_with(".py") {
        python_invocations(text, rel, &cli.subcommands())
    } else if rel.ends_with(".yaml") || rel.ends_with(".yml") {
        kubernetes_invocations(text, rel)
    } else {
        dockerfile_invocations(text, rel)
    }
}

/// The real check. It checks names (subcommands and flags), not values: that `--state` takes a
/// `postgres://` URL, or `--report` an `s3://` one, is for the tests of those features.
#[test]
fn deployment_files_use_only_flags_that_msgcapi_has() {
    let cli = Cli::new();
    let mut problems = Vec::new();
    for rel in [DOCKERFILE, KUBERNETES, AIRFLOW] {
        let found = invocations_of(rel, &read(rel), &cli);
        assert!(!found.is_empty(), "{rel}: no msgcapi command line found");
        if rel != DOCKERFILE {
            assert!(
                found
                    .iter()
                    .any(|i| i.args.first().is_some_and(|a| a == "send")),
                "{rel}: no `msgcapi send` found in {found:?}"
            );
        }
        for inv in &found {
            problems.extend(cli.check(inv));
        }
    }
    assert!(
        problems.is_empty(),
        "flags or subcommands msgcapi does not have:\n  {}",
        problems.join("\n  ")
    );
}

/// The check can fail: a made-up flag or subcommand is caught in each kind of file, and real
/// ones pass.
#[test]
fn a_made_up_flag_is_caught_in_every_kind_of_file() {
    let cli = Cli::new();
    let problems_of = |rel: &str, text: &str| -> Vec<String> {
        let found = invocations_of(rel, text, &cli);
        assert!(!found.is_empty(), "{rel}: nothing found in\n{text}");
        found.iter().flat_map(|i| cli.check(i)).collect()
    };

    let dockerfile = "FROM debian\nENTRYPOINT [\"/usr/local/bin/msgcapi\"]\nCMD [\"send\", \"--mapping\", \"m.yaml\", \"--no-such-flag\", \"in.csv\"]\n";
    let yaml = "spec:\n  containers:\n    - name: m\n      image: registry.example.com/msgcapi:1\n      args: [send, --mapping, m.yaml, --no-such-flag, in.csv]\n";
    let shell_yaml = "spec:\n  containers:\n    - name: m\n      image: x\n      command: [/bin/sh, -ec]\n      args:\n        - |\n          exec msgcapi send --mapping m.yaml \\\n            --no-such-flag=1 in.csv\n";
    let python = "args = [\n    \"send\",  # the subcommand\n    \"--mapping\", MAPPING,\n    f\"--no-such-flag={k}\",\n]\n";
    let bash = "BashOperator(task_id='t', bash_command=\"msgcapi send --mapping m.yaml --no-such-flag in.csv\")\n";
    for (rel, text) in [
        ("Dockerfile", dockerfile),
        ("k.yaml", yaml),
        ("k.yaml", shell_yaml),
        ("d.py", python),
        ("d.py", bash),
    ] {
        let problems = problems_of(rel, text);
        assert_eq!(problems.len(), 1, "{rel}: {problems:?}\n{text}");
        assert!(
            problems[0].contains("has no flag `--no-such-flag`"),
            "{rel}: {problems:?}"
        );
        // The same text with a real flag instead passes.
        let real = text.replace("--no-such-flag", "--strict-keys");
        let real = real.replace("--strict-keys=1", "--strict-keys");
        let real = real.replace("f\"--strict-keys={k}\"", "\"--strict-keys\"");
        assert_eq!(
            problems_of(rel, &real),
            Vec::<String>::new(),
            "{rel}:\n{real}"
        );
    }

    // A flag of another subcommand, a made-up subcommand, a made-up short flag.
    let found = shell_invocations(
        "msgcapi validate --mapping m.yaml --concurrency 4 in.csv\nmsgcapi sned --mapping m.yaml\nmsgcapi state stats --state s.db -z",
        "t",
    );
    let problems: Vec<String> = found.iter().flat_map(|i| cli.check(i)).collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("`msgcapi validate` has no flag `--concurrency`"));
    assert!(problems[1].contains("`msgcapi` has no subcommand `sned`"));
    assert!(problems[2].contains("`msgcapi state stats` has no flag `-z`"));
}

/// What each reader finds, word for word.
#[test]
fn the_readers_find_each_command_line_word_for_word() {
    let words = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // Shell: quotes, continuations, expansions kept as text, `exec`, assignments,
    // redirections, comments, several commands; other programs are not msgcapi.
    let script = "night=\"${NIGHT:-$(date -u +%F)}\" # a comment: msgcapi send --x\n\
                  cp target/release/msgcapi /usr/local/bin/msgcapi && \\\n\
                  TZ=UTC exec /usr/local/bin/msgcapi send \\\n  --report \"s3://r/$night/shard-$(echo 1).csv\" \
                  --now='2026-11-20T12:00:00Z' 's3://e/*.csv.gz' 2>&1 > log.txt; msgcapi --version | cat";
    let found = shell_invocations(script, "s");
    assert_eq!(
        found.iter().map(|i| i.args.clone()).collect::<Vec<_>>(),
        vec![
            words(&[
                "send",
                "--report",
                "s3://r/$night/shard-$(echo 1).csv",
                "--now=2026-11-20T12:00:00Z",
                "s3://e/*.csv.gz"
            ]),
            words(&["--version"]),
        ]
    );

    // Dockerfile: COPY names the binary but runs nothing; RUN in both forms; ENTRYPOINT + CMD.
    let dockerfile = "FROM rust AS build\nRUN cargo build --release --bin msgcapi\n\
                      FROM debian\n# RUN msgcapi --not-run\nCOPY --from=build /src/target/release/msgcapi /usr/local/bin/msgcapi\n\
                      RUN [\"/usr/local/bin/msgcapi\", \"--version\"]\nRUN --mount=type=cache,target=/x msgcapi \\\n    validate --help\n\
                      ENTRYPOINT [\"/usr/local/bin/msgcapi\"]\nCMD [\"--help\"]\n";
    assert_eq!(
        dockerfile_invocations(dockerfile, "D")
            .iter()
            .map(|i| i.args.clone())
            .collect::<Vec<_>>(),
        vec![
            words(&["--version"]),
            words(&["validate", "--help"]),
            words(&["--help"])
        ]
    );

    // Kubernetes: an msgcapi image without `command` runs msgcapi with `args`; `$(VAR)` is text;
    // a container of another image without `command` is not msgcapi.
    let yaml = "apiVersion: batch/v1\nkind: Job\nspec:\n  template:\n    spec:\n      initContainers:\n        - name: wait\n          image: busybox\n          args: [sleep, '1']\n      containers:\n        - name: m\n          image: registry.example.com/team/msgcapi@sha256:abc\n          args: [\"send\", \"--shard\", \"$(JOB_COMPLETION_INDEX)/4\"]\n---\nkind: ConfigMap\n";
    let found = kubernetes_invocations(yaml, "k");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].args,
        words(&["send", "--shard", "$(JOB_COMPLETION_INDEX)/4"])
    );
    assert_eq!(
        found[0].value_of("--shard"),
        Some("$(JOB_COMPLETION_INDEX)/4")
    );

    // Python: comments, f-strings, implicit concatenation, names as values, nested lists,
    // lists that are not msgcapi's.
    let subcommands: BTreeSet<String> = ["send", "validate", "state"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let python = "# [\"send\", \"--in-a-comment\"]\nSECRETS = [\"env\", \"--not-msgcapi\"]\n\
                  def args(k):\n    return [\n        \"send\",\n        \"--state\", LEDGER,  # the ledger\n        \"--report\", f\"s3://r/{NIGHT}/shard-{k}.csv\",\n        \"--progress\" \"\", 'log',\n        *EXTRA,\n        r'''s3://e/*.csv.gz''',\n    ]\nop.expand(arguments=[args(k) for k in range(4)])\n\
                  cmds = ['msgcapi', 'validate', '--mapping', m, \"x[0].csv\"]\n\
                  doc = \"\"\"Runs msgcapi on each shard; msgcapi is the entrypoint.\"\"\"\n";
    let found = python_invocations(python, "p", &subcommands);
    assert_eq!(
        found.iter().map(|i| i.args.clone()).collect::<Vec<_>>(),
        vec![
            words(&[
                "send",
                "--state",
                "<expr>",
                "--report",
                "s3://r/{NIGHT}/shard-{k}.csv",
                "--progress",
                "log",
                "<expr>",
                "s3://e/*.csv.gz"
            ]),
            words(&["validate", "--mapping", "<expr>", "x[0].csv"]),
        ]
    );

    // clap's help: short and long forms, values, possible values not taken for flags.
    let help = "Usage: msgcapi send [OPTIONS]\n\nCommands:\n  stats   Count\n  help    Print\n\nOptions:\n      --mapping <FILE>\n          Mapping YAML\n      --progress <MODE>\n          Possible values:\n          - auto: A bar\n          - log\n  -q, --quiet\n          No summary\n  -h, --help  Print help\n";
    let level = parse_help(help);
    assert_eq!(
        level.flags,
        [
            ("--mapping", true),
            ("--progress", true),
            ("-q", false),
            ("--quiet", false),
            ("-h", false),
            ("--help", false)
        ]
        .iter()
        .map(|(f, v)| (f.to_string(), *v))
        .collect::<BTreeMap<_, _>>()
    );
    assert_eq!(
        level.subcommands,
        ["stats", "help"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
    );
}

/// In the CronJob, `--shard K/N` names as many shards as the Job has completions: a shard no
/// pod runs would be a part of the night never sent.
#[test]
fn kubernetes_shards_match_the_job_completions() {
    let docs = yaml_documents(&read(KUBERNETES), KUBERNETES);
    let mut jobs = 0;
    fn jobs_in(v: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
        match v {
            serde_json::Value::Object(map) => {
                if map.contains_key("completions") && map.contains_key("template") {
                    out.push(v.clone());
                }
                map.values().for_each(|x| jobs_in(x, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|x| jobs_in(x, out)),
            _ => {}
        }
    }
    let mut specs = Vec::new();
    docs.iter().for_each(|d| jobs_in(d, &mut specs));
    for spec in specs {
        let completions = spec["completions"].as_u64().expect("completions");
        for inv in container_invocations(&spec["template"], KUBERNETES) {
            let shard = inv
                .value_of("--shard")
                .unwrap_or_else(|| panic!("{}: no --shard in {:?}", inv.origin, inv.args));
            let n = shard.rsplit('/').next().unwrap_or("");
            assert_eq!(
                n.parse::<u64>().ok(),
                Some(completions),
                "{}: --shard {shard} with completions: {completions}",
                inv.origin
            );
            assert_eq!(
                spec["completionMode"], "Indexed",
                "{}: K comes from the completion index",
                inv.origin
            );
            jobs += 1;
        }
    }
    assert!(jobs > 0, "{KUBERNETES}: no Job running msgcapi");
}
