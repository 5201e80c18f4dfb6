//! Syntax trees of entry files: parse errors, and the commands a script runs.
//!
//! PowerShell entries are parsed with tree-sitter-powershell and bash/sh entries with
//! tree-sitter-bash. zsh entries are not parsed: there is no zsh grammar, and the bash
//! one rejects valid zsh (`$+commands[x]`, `<->`, glob qualifiers), so the scanner
//! never calls this for them. One parse serves both the syntax check and the command
//! rules. Command names are normalised the way the shell resolves
//! them, so that spelling does not hide a command: backticks (``i`e`x``), case, module
//! qualification (`Microsoft.PowerShell.Utility\Invoke-Expression`), paths and `.exe`,
//! built-in aliases (`iex`, `iwr`, `irm`, `saps`, …), aliases the script defines itself
//! (`Set-Alias x iex`), and names computed from constant strings
//! (`& ('Invoke-' + 'Expression')`, `& ('{0}{1}' -f 'ie','x')`, `$c = 'i'+'ex'; & $c`).

use crate::manifest::Language;
use std::collections::HashMap;
use tree_sitter::{Node, Parser, Tree};

/// Whether command rules and the syntax check have a grammar for `lang`.
pub(crate) fn has_tree(lang: Language) -> bool {
    matches!(lang, Language::Powershell | Language::Shell)
}

/// PowerShell 5.1's built-in aliases that matter to the rules (lowercase).
const PS_ALIASES: &[(&str, &str)] = &[
    ("iex", "invoke-expression"),
    ("iwr", "invoke-webrequest"),
    ("curl", "invoke-webrequest"),
    ("wget", "invoke-webrequest"),
    ("irm", "invoke-restmethod"),
    ("saps", "start-process"),
    ("start", "start-process"),
    ("sal", "set-alias"),
    ("nal", "new-alias"),
    ("icm", "invoke-command"),
    ("ipmo", "import-module"),
    ("gcm", "get-command"),
    ("gp", "get-itemproperty"),
    ("gpv", "get-itempropertyvalue"),
    ("sp", "set-itemproperty"),
    ("ni", "new-item"),
    ("ri", "remove-item"),
    ("rm", "remove-item"),
    ("rmdir", "remove-item"),
    ("rd", "remove-item"),
    ("del", "remove-item"),
    ("erase", "remove-item"),
    ("ii", "invoke-item"),
    ("gc", "get-content"),
    ("cat", "get-content"),
    ("type", "get-content"),
    ("sc", "set-content"),
    ("ac", "add-content"),
    ("cp", "copy-item"),
    ("copy", "copy-item"),
    ("cpi", "copy-item"),
    ("mv", "move-item"),
    ("move", "move-item"),
    ("mi", "move-item"),
    ("gci", "get-childitem"),
    ("ls", "get-childitem"),
    ("dir", "get-childitem"),
    ("gwmi", "get-wmiobject"),
    ("rwmi", "remove-wmiobject"),
    ("swmi", "set-wmiinstance"),
    ("iwmi", "invoke-wmimethod"),
    ("gcim", "get-ciminstance"),
    ("rcim", "remove-ciminstance"),
    ("ncim", "new-ciminstance"),
    ("icim", "invoke-cimmethod"),
    ("sasv", "start-service"),
    ("spsv", "stop-service"),
    ("gsv", "get-service"),
    ("kill", "stop-process"),
    ("spps", "stop-process"),
    ("echo", "write-output"),
    ("write", "write-output"),
    ("%", "foreach-object"),
    ("foreach", "foreach-object"),
    ("?", "where-object"),
    ("where", "where-object"),
    ("sls", "select-string"),
];

/// Programs that run another command given as their arguments (`sudo curl …`).
const SHELL_WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "nohup", "exec", "command", "builtin", "nice", "time", "timeout",
    "stdbuf", "setsid", "xargs",
];

/// Normalises a command name as written in `lang` (rule names go through this too).
pub(crate) fn normalize(lang: Language, name: &str) -> String {
    match lang {
        Language::Powershell => normalize_ps(name, None),
        _ => normalize_shell(name),
    }
}

/// Lowercase, without backticks, quotes, module or folder, and `.exe`; `true` in the
/// second place when the name was a path or a file name (so no alias applies).
fn ps_base(raw: &str) -> (String, bool) {
    let cleaned: String = raw.chars().filter(|c| *c != '`').collect();
    let cleaned = cleaned.trim().trim_matches(['\'', '"']).to_lowercase();
    let pathlike = cleaned.contains(['\\', '/']);
    let base = cleaned.rsplit(['\\', '/']).next().unwrap_or(&cleaned);
    // A module-qualified cmdlet (`Microsoft.PowerShell.Utility\Invoke-Expression`) keeps
    // its alias-free name; a file path keeps the file name without `.exe`.
    match base.strip_suffix(".exe") {
        Some(stem) => (stem.to_string(), true),
        None => (base.to_string(), pathlike),
    }
}

fn normalize_ps(raw: &str, user: Option<&HashMap<String, String>>) -> String {
    let (base, pathlike) = ps_base(raw);
    if pathlike {
        return base;
    }
    if let Some(target) = user.and_then(|u| u.get(&base)) {
        return target.clone();
    }
    PS_ALIASES
        .iter()
        .find(|(a, _)| *a == base)
        .map(|(_, t)| t.to_string())
        .unwrap_or(base)
}

fn normalize_shell(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .filter(|c| !matches!(c, '\\' | '\'' | '"'))
        .collect();
    cleaned
        .rsplit('/')
        .next()
        .unwrap_or(&cleaned)
        .to_lowercase()
}

/// A command found in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    /// Normalised name, when it is known.
    pub name: Option<String>,
    /// Where the argument text and the rest of the pipeline after the command are.
    pub args: std::ops::Range<usize>,
    /// Byte offset of the command in the parsed text.
    pub offset: usize,
    /// Invoked with `&`/`.` (or `$(…)` in shell) under a name computed at run time.
    pub computed: bool,
    /// The name is written with escapes (backticks, backslashes, inner quotes).
    pub escaped: bool,
}

/// The first parse error of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// Byte offset in the parsed text where the finding points.
    pub offset: usize,
    /// What the parser reported.
    pub message: String,
    /// A construct the PowerShell grammar is known not to support (not a real error).
    pub known_gap: Option<&'static str>,
    /// For a construct left open (a missing `}`, `fi`, `done`, …, or an error at the end
    /// of the file): the token that opens it.
    pub unclosed: Option<Unclosed>,
}

/// The opening of a construct that is never closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unclosed {
    /// Byte offset of the opening token.
    pub offset: usize,
    /// The opening token (`{`, `if`, `do`, …) or the first line of the construct.
    pub token: String,
}

/// What one parse yields.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub error: Option<SyntaxError>,
    pub error_count: usize,
    pub commands: Vec<Command>,
}

/// Parses `text` (no BOM) of `lang`; `None` when there is no grammar or parsing failed.
pub(crate) fn parse(lang: Language, text: &str, want_commands: bool) -> Option<Parsed> {
    let mut parser = Parser::new();
    let language = match lang {
        Language::Powershell => tree_sitter_powershell::LANGUAGE,
        Language::Shell => tree_sitter_bash::LANGUAGE,
        _ => return None,
    };
    parser.set_language(&language.into()).ok()?;
    let tree = parser.parse(text, None)?;
    let mut parsed = Parsed::default();
    // The innermost errors: MISSING nodes, and ERROR nodes holding no other error (error
    // recovery often wraps a stretch of valid statements in an outer ERROR).
    let mut errors = Vec::new();
    if tree.root_node().has_error() {
        walk(&tree, |node, _| {
            if node.is_missing() {
                errors.push(node);
            } else if node.is_error() {
                let mut c = node.walk();
                if !node.children(&mut c).any(|ch| ch.has_error()) {
                    errors.push(node);
                }
            }
            node.has_error()
        });
    }
    // Reserved words where bash rejects them (`fi` as a command, `then fi`): error
    // recovery reads them as plain words, so the tree alone does not show them.
    let strays = match lang {
        Language::Shell => stray_reserved_words(&tree, text),
        _ => Vec::new(),
    };
    parsed.error_count = errors.len() + strays.len();
    // The first error decides: after a construct the grammar lacks, error recovery
    // often reports follow-on errors in valid code, so later errors are not judged.
    let first_tree_error = errors.first().map(|n| {
        (
            *n,
            error_point(lang, *n, text).map_or(n.start_byte(), |p| p.0),
        )
    });
    parsed.error = match (first_tree_error, strays.first()) {
        (Some((_, at)), Some(stray)) if stray.0 < at => Some(stray_error(stray)),
        (None, Some(stray)) => Some(stray_error(stray)),
        (Some((node, _)), _) => Some(describe_error(lang, node, text)),
        (None, None) => None,
    };
    let mut commands = Vec::new();
    let mut assignments = Vec::new();
    if want_commands {
        let bytes = text.as_bytes();
        walk(&tree, |node, ancestors| {
            let kind = node.kind();
            match kind {
                "command" => commands.push((node, args_end(lang, node, ancestors))),
                "assignment_expression" if lang == Language::Powershell => assignments.push(node),
                _ => {}
            }
            // A command inside an expression, argument or string needs a bracket (`(`,
            // `$(`, `{`, a backtick in shell): skip subtrees without one. Most of a
            // PowerShell tree is expression wrappers, so this halves the walk.
            let leafy = match lang {
                Language::Powershell => PS_LEAFY.contains(&kind),
                _ => SHELL_LEAFY.contains(&kind),
            };
            !leafy
                || bytes
                    .get(node.byte_range())
                    .is_some_and(|t| t.iter().any(|b| matches!(b, b'(' | b'{' | b'`')))
        });
    }
    if want_commands {
        parsed.commands = match lang {
            Language::Powershell => PsCommands::new(text, &assignments).collect(&commands),
            _ => shell_commands(text, &commands),
        };
    }
    Some(parsed)
}

/// Visits nodes in document order without recursion (trees can be deep), with the
/// node's ancestors; `visit` returns whether to enter the node's children.
fn walk<'t>(tree: &'t Tree, mut visit: impl FnMut(Node<'t>, &[Node<'t>]) -> bool) {
    let mut cursor = tree.walk();
    // The ancestors of the current node (tracked here: `Node::parent` walks from the root).
    let mut stack: Vec<Node<'t>> = Vec::new();
    loop {
        let node = cursor.node();
        if visit(node, &stack) && cursor.goto_first_child() {
            stack.push(node);
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return;
            }
            stack.pop();
        }
    }
}

/// PowerShell nodes that hold a command only inside brackets.
const PS_LEAFY: &[&str] = &[
    "logical_expression",
    "bitwise_expression",
    "comparison_expression",
    "additive_expression",
    "multiplicative_expression",
    "format_expression",
    "range_expression",
    "array_literal_expression",
    "unary_expression",
    "argument_expression",
    "logical_argument_expression",
    "left_assignment_expression",
    "command_name_expr",
    "string_literal",
    "command_elements",
    "member_access",
    "element_access",
    "invokation_expression",
    "cast_expression",
    "expression_with_unary_operator",
];

/// Shell nodes that hold a command only inside `$(…)`, `<(…)` or backticks.
const SHELL_LEAFY: &[&str] = &[
    "word",
    "string",
    "raw_string",
    "concatenation",
    "number",
    "simple_expansion",
    "expansion",
    "heredoc_body",
    "comment",
    "file_redirect",
];

/// Where a command's "arguments and rest of the statement" end: the end of its
/// pipeline (and, in shell, of the redirections around it).
fn args_end(lang: Language, node: Node<'_>, ancestors: &[Node<'_>]) -> usize {
    let mut end = node.end_byte();
    for a in ancestors.iter().rev() {
        match (lang, a.kind()) {
            (Language::Powershell, "pipeline_chain") => return a.end_byte(),
            (Language::Powershell, _) => return end,
            (_, "redirected_statement" | "pipeline") => end = a.end_byte(),
            _ => return end,
        }
    }
    end
}

fn snippet(text: &str, node: Node<'_>) -> String {
    let s = text.get(node.byte_range()).unwrap_or("");
    let line = s.lines().next().unwrap_or("").trim();
    let mut out: String = line.chars().take(40).collect();
    if out.len() < line.len() {
        out.push('…');
    }
    out
}

fn describe_error(lang: Language, node: Node<'_>, text: &str) -> SyntaxError {
    let message = if node.kind() == "heredoc_end" {
        "missing the line that ends the here-document".to_string()
    } else if node.is_missing() {
        format!("missing `{}`", node.kind())
    } else {
        let s = snippet(text, node);
        if s.is_empty() {
            "unexpected end of input".to_string()
        } else {
            format!("unexpected `{s}`")
        }
    };
    // The parser notices an unclosed construct only where the text runs out, which may
    // be far below the line that needs fixing: report where it opens, unless its body
    // runs on, indented, to the end (then the closer belongs at the end).
    let at_end = text
        .get(node.start_byte()..)
        .is_some_and(|rest| rest.trim().is_empty());
    let unclosed = if node.is_missing() || at_end {
        unclosed_opener(node, text)
    } else {
        None
    };
    let known_gap = if node.is_missing() {
        // A missing token is a real error, except the `;` the grammar wants after a
        // script that is only a param(...) block.
        (lang == Language::Powershell)
            .then(|| param_only_gap(node))
            .flatten()
    } else if lang == Language::Powershell {
        powershell_gap(node, text)
    } else {
        shell_gap(node, text)
    };
    // An ERROR that swallowed valid statements before the break: report the break.
    let point = if unclosed.is_none() && !at_end && known_gap.is_none() {
        error_point(lang, node, text)
    } else {
        None
    };
    let (offset, message) = match (&unclosed, point) {
        (_, Some((at, token))) => (at, format!("unexpected `{token}`")),
        (Some(u), _) if !indented_to(text, u.offset, node.start_byte()) => (u.offset, message),
        // After the last token rather than on the empty line after the final newline.
        _ if at_end => (text[..node.start_byte()].trim_end().len(), message),
        _ => (node.start_byte(), message),
    };
    SyntaxError {
        offset,
        unclosed,
        message,
        known_gap,
    }
}

/// Where bash stops in a tree error, when that is not where the parser put it (`None`
/// for PowerShell, and to keep the parser's position):
/// - an ERROR that recovery started early (often at the top of the file, taking in the
///   valid statements before the break): a token that wants a command followed by a
///   reserved word (`if then`, `while do`), else the first token after the complete
///   statements, else the text after them;
/// - a MISSING `;` before a reserved word (`if …; fi fi`): that word.
fn error_point(lang: Language, node: Node<'_>, text: &str) -> Option<(usize, String)> {
    if lang != Language::Shell {
        return None;
    }
    if node.is_missing() {
        // `if …; fi fi`: the grammar wants a `;` before the second `fi`; bash stops at it.
        return (node.kind() == ";")
            .then(|| next_non_comment(node))
            .flatten()
            .and_then(|next| reserved_command_word(next, text));
    }
    if !node.is_error() {
        return None;
    }
    let mut c = node.walk();
    let children: Vec<Node<'_>> = node.children(&mut c).collect();
    // Recovery flattens the tokens of the valid constructs around the break into the
    // ERROR (`for f in *; do` before an `if then`), so a loose token is no proof of an
    // error; a token that wants a command followed by a reserved word is.
    for (i, ch) in children.iter().enumerate() {
        if ch.is_named() || !EXPECTS_COMMAND.contains(&ch.kind()) {
            continue;
        }
        if let Some(next) = children[i + 1..].iter().find(|n| n.kind() != "comment")
            && let Some(word) = reserved_command_word(*next, text)
        {
            return Some(word);
        }
    }
    // Otherwise the first loose token, when complete statements come before it.
    let mut statements_before = false;
    for ch in &children {
        if (ch.is_named() && !ch.is_error()) || matches!(ch.kind(), ";" | "&" | "\n") {
            statements_before |= ch.is_named() && ch.kind() != "comment";
            continue;
        }
        return statements_before.then(|| {
            let token = text.get(ch.byte_range()).unwrap_or("").trim();
            (ch.start_byte(), token.chars().take(40).collect())
        });
    }
    // Only complete statements: the break is the text after them (`{ :; } }`).
    let last_end = children.last().map_or(node.start_byte(), |n| n.end_byte());
    let rest = text.get(last_end..node.end_byte()).unwrap_or("");
    let at = last_end + (rest.len() - rest.trim_start().len());
    let token: String = rest
        .split_whitespace()
        .next()
        .unwrap_or("")
        .chars()
        .take(40)
        .collect();
    (statements_before && !token.is_empty()).then_some((at, token))
}

/// The next sibling that is not a comment.
fn next_non_comment(node: Node<'_>) -> Option<Node<'_>> {
    std::iter::successors(node.next_sibling(), |n| n.next_sibling()).find(|n| n.kind() != "comment")
}

/// The bytes that end an unquoted word for bash (blanks and metacharacters).
const WORD_END: &[u8] = b" \t\r\n;&|()<>";

/// Whether a word ending at `end` ends there for bash too: `fi#c` is one word to bash
/// (a `#` inside a word starts no comment), and `}x` is not `}`.
fn word_ends(text: &str, end: usize) -> bool {
    text.as_bytes()
        .get(end)
        .is_none_or(|b| WORD_END.contains(b))
}

// ---------------------------------------------------------------------------------------
// Reserved words bash rejects

/// Reserved words that bash rejects as the first word of a simple command (verified with
/// `bash -n`, bash 5.2): closers and the middle of compound commands. The openers (`if`,
/// `while`, `{`, `[[`, `!`, `time`, …) begin a construct the grammar parses as one.
const STRAY_RESERVED: &[&str] = &[
    "fi", "then", "else", "elif", "done", "do", "esac", "in", "}", "]]",
];

/// Reserved words that open a compound command. The grammar parses them as constructs,
/// except after `!`, `time` and `coproc` (`! if …`, `time { …; }`), which it reads as
/// a simple command with plain words: from there on the tree no longer follows bash.
const OPENERS: &[&str] = &[
    "{", "if", "while", "until", "for", "select", "case", "function", "[[", "coproc", "!",
];

/// Tokens after which bash reads a command, so a reserved word there is a stray.
const EXPECTS_COMMAND: &[&str] = &[
    "if", "then", "elif", "else", "while", "until", "do", "{", "(", "$(", "!", "&&", "||", "|",
    "|&",
];

/// `(offset, word)` of the word in command position of a `command` node (see
/// [`command_word`]) when it is a stray reserved word.
fn reserved_command_word(node: Node<'_>, text: &str) -> Option<(usize, String)> {
    if node.kind() != "command" {
        return None;
    }
    let (at, word) = command_word(node, text)?;
    STRAY_RESERVED
        .contains(&word)
        .then(|| (at, word.to_string()))
}

/// A non-missing closing token `node` (`fi`, `done`, `}`, …) as a stray.
fn token_at(node: Option<Node<'_>>, text: &str) -> Option<(usize, String)> {
    let node = node.filter(|n| !n.is_missing() && !n.is_named())?;
    Some((node.start_byte(), text.get(node.byte_range())?.to_string()))
}

/// The first child after the one of kind `after`, skipping comments.
fn child_after<'t>(node: Node<'t>, after: &str) -> Option<Node<'t>> {
    let mut c = node.walk();
    let mut children = node.children(&mut c).filter(|n| n.kind() != "comment");
    children.find(|n| n.kind() == after)?;
    children.next()
}

/// Whether `node` has nothing but comments after its child of kind `after` (`else`
/// alone, `then` as the last token of an `elif` clause).
fn body_empty_after(node: Node<'_>, after: &str) -> bool {
    let mut c = node.walk();
    let rest: Vec<Node<'_>> = node
        .children(&mut c)
        .filter(|n| n.kind() != "comment")
        .skip_while(|n| n.kind() != after)
        .collect();
    rest.len() == 1
}

/// Reserved words bash rejects that tree-sitter-bash accepts, sorted by offset, outside
/// ERROR nodes (what recovery makes of those is judged with the ERROR): a reserved word as
/// a command (`fi`, `echo x; then`, `time fi`), as a function name (`done() {…}`), as the
/// closer of an empty body (`then fi`, `do done`, `{ }`), and the `}` of a group whose
/// `{` is glued to a word (`{echo; }`: bash reads `{echo` as a command). Not inside a
/// here-document or backquotes, which `bash -n` does not parse.
fn stray_reserved_words(tree: &Tree, text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    // Where the tree stops following bash (a compound command after `!`, `time` or
    // `coproc`): reserved words after it are not judged.
    let mut lost = usize::MAX;
    walk(tree, |node, _| {
        match node.kind() {
            "ERROR" | "heredoc_body" => return false,
            "command_substitution" if node.child(0).is_some_and(|c| c.kind() == "`") => {
                return false;
            }
            "command" => match command_word(node, text) {
                Some((at, word)) if STRAY_RESERVED.contains(&word) => {
                    out.push((at, word.to_string()));
                }
                Some((_, word)) if OPENERS.contains(&word) => lost = lost.min(node.start_byte()),
                _ => {}
            },
            "function_definition" => {
                // `fi() {…}`; `function fi {…}` is allowed.
                if let Some(name) = node.child(0).filter(|n| n.kind() == "word")
                    && let Some(raw) = text.get(name.byte_range())
                    && STRAY_RESERVED.contains(&raw)
                    && word_ends(text, name.end_byte())
                {
                    out.push((name.start_byte(), raw.to_string()));
                }
            }
            "if_statement" => {
                // `then` straight followed by `fi`, `elif` or `else`.
                let next = child_after(node, "then");
                let stray = match next.map(|n| n.kind()) {
                    Some("elif_clause" | "else_clause") => next.and_then(|n| n.child(0)),
                    _ => next,
                };
                out.extend(token_at(stray, text));
            }
            "elif_clause" | "else_clause" => {
                let opener = if node.kind() == "elif_clause" {
                    "then"
                } else {
                    "else"
                };
                if body_empty_after(node, opener) {
                    let next = next_non_comment(node);
                    let next = match next.map(|n| n.kind()) {
                        Some("elif_clause" | "else_clause") => next.and_then(|n| n.child(0)),
                        _ => next,
                    };
                    out.extend(token_at(next, text));
                }
            }
            "do_group" => {
                if let Some(t) =
                    token_at(child_after(node, "do"), text).filter(|(_, t)| t == "done")
                {
                    out.push(t);
                }
            }
            "compound_statement" => {
                let open = node.child(0).filter(|n| n.kind() == "{");
                let close = node
                    .child(node.child_count().saturating_sub(1))
                    .filter(|n| n.kind() == "}" && !n.is_missing());
                if let (Some(open), Some(close)) = (open, close) {
                    let glued = !word_ends(text, open.end_byte());
                    if glued
                        && node
                            .parent()
                            .is_some_and(|p| p.kind() == "function_definition")
                    {
                        // `f(){echo; }`: bash stops at the word `{echo`.
                        let rest = &text[open.start_byte()..];
                        let end = rest
                            .bytes()
                            .position(|b| WORD_END.contains(&b))
                            .unwrap_or(rest.len());
                        out.push((open.start_byte(), rest[..end].to_string()));
                    } else if glued || child_after(node, "{").is_some_and(|n| n.id() == close.id())
                    {
                        out.extend(token_at(Some(close), text));
                    }
                }
            }
            _ => {}
        }
        true
    });
    out.retain(|(at, _)| *at < lost);
    out.sort();
    out
}

/// The word bash reads in command position of a simple command, when it is unquoted and
/// unescaped, with its offset: the name, or after `time` (which the grammar reads as a
/// command, bash as a reserved word taking a pipeline) the first word after `-p`, `--`
/// and `!`. `None` after an assignment or redirection (`FOO=1 fi`, `> x fi`: there
/// bash reads a plain word) and for a word that runs on for bash (`fi#c`).
fn command_word<'a>(node: Node<'_>, text: &'a str) -> Option<(usize, &'a str)> {
    let name = node.child_by_field_name("name")?;
    if node.child(0)?.id() != name.id() {
        return None;
    }
    let mut word = name;
    if text.get(name.byte_range())? == "time" {
        let mut c = node.walk();
        let arg = node
            .children_by_field_name("argument", &mut c)
            .find(|a| !matches!(text.get(a.byte_range()), Some("-p" | "--" | "!")));
        match arg {
            Some(arg) => word = arg,
            None => return None,
        }
    }
    let raw = text.get(word.byte_range())?;
    word_ends(text, word.end_byte()).then_some((word.start_byte(), raw))
}

fn stray_error((offset, token): &(usize, String)) -> SyntaxError {
    SyntaxError {
        offset: *offset,
        message: format!("unexpected `{token}`"),
        known_gap: None,
        unclosed: None,
    }
}

/// Closing tokens the parser reports missing, and the tokens that open them.
const CLOSERS: &[(&str, &[&str])] = &[
    ("}", &["{", "${", "@{"]),
    (")", &["(", "$(", "@(", "<(", ">("]),
    ("]", &["["]),
    ("]]", &["[["]),
    ("))", &["((", "$(("]),
    ("fi", &["if"]),
    ("done", &["do"]),
    ("esac", &["case"]),
];

/// The opening of the construct a missing closer (or an error at the end of the file)
/// leaves open: the innermost enclosing node that starts before the error, and in it the
/// last token that the missing closer pairs with. `None` when nothing encloses the error
/// but the file itself, or when what is missing is not a closer (`echo x |` lacks a
/// command, not a bracket).
fn unclosed_opener(node: Node<'_>, text: &str) -> Option<Unclosed> {
    let at = node.start_byte();
    let openers: &[&str] = if node.is_missing() {
        match CLOSERS.iter().find(|(c, _)| *c == node.kind()) {
            Some((_, openers)) => openers,
            None if node.kind() == "heredoc_end" => &[],
            None => return None,
        }
    } else {
        &[]
    };
    let mut construct = node.parent()?;
    while construct.start_byte() >= at {
        construct = construct.parent()?;
    }
    construct.parent()?; // the root: the file is not a construct
    let mut c = construct.walk();
    let token = construct
        .children(&mut c)
        .filter(|ch| !ch.is_named() && ch.end_byte() <= at && openers.contains(&ch.kind()))
        .last();
    Some(match token {
        Some(t) => Unclosed {
            offset: t.start_byte(),
            token: t.kind().to_string(),
        },
        None => Unclosed {
            offset: construct.start_byte(),
            token: snippet(text, construct),
        },
    })
}

/// Whether every non-blank line after the opener's line, up to the error, is indented
/// deeper than the opener's line: the construct visibly runs on to the error, so that is
/// where its closer is missing. Otherwise the code returns to the opener's level first,
/// so the construct was meant to close earlier and its opening is the line to look at.
fn indented_to(text: &str, opener: usize, error: usize) -> bool {
    let indent = |line: &str| line.len() - line.trim_start_matches([' ', '\t']).len();
    let line_start = text[..opener].rfind('\n').map_or(0, |i| i + 1);
    let base = indent(&text[line_start..]);
    let Some(next_line) = text[opener..].find('\n').map(|i| opener + i + 1) else {
        return true;
    };
    text.get(next_line..error).is_none_or(|body| {
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| indent(l) > base)
    })
}

/// Valid bash that tree-sitter-bash 0.25 rejects: arithmetic with a base prefix
/// (`$((10#$n))`) and some parameter expansions (`${a[$k:$v]}`, `${x#*[}`, `${x%]}`).
fn shell_gap(node: Node<'_>, text: &str) -> Option<&'static str> {
    let t = text.get(node.byte_range()).unwrap_or("");
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && t.as_bytes().get(digits) == Some(&b'#') {
        return Some("an arithmetic base prefix (`10#…`)");
    }
    let parent = node.parent()?;
    let in_expansion = matches!(parent.kind(), "subscript" | "expansion")
        || std::iter::successors(node.prev_sibling(), |n| n.prev_sibling())
            .take(8)
            .any(|n| n.kind() == "${");
    in_expansion.then_some("a parameter expansion the grammar does not cover")
}

/// A script that is only a param(...) block: the grammar wants a statement after it.
fn param_only_gap(node: Node<'_>) -> Option<&'static str> {
    let parent = node.parent();
    (node.is_missing()
        && parent.is_some_and(|p| p.kind() == "empty_statement")
        && parent
            .and_then(|p| p.parent())
            .and_then(|l| l.prev_sibling())
            .is_some_and(|s| s.kind() == "param_block"))
    .then_some("a script that is only a param(...) block")
}

/// Valid PowerShell that tree-sitter-powershell 0.26 rejects, recognised by where the
/// error sits, so such scripts are warned about rather than refused.
/// Whether `s` starts with a variable directly followed by `\\` (`$env:TEMP\\logs`,
/// `$HOME\\b.txt`): a bare-word path argument PowerShell expands, which the grammar
/// rejects.
fn variable_then_backslash(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('$') else {
        return false;
    };
    let name = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(rest.len());
    name > 0 && rest[name..].starts_with('\\')
}

fn powershell_gap(node: Node<'_>, text: &str) -> Option<&'static str> {
    let prev = node.prev_sibling().map(|p| p.kind());
    if prev == Some("flow_control_statement") {
        return Some("a loop label after break/continue");
    }
    if prev == Some("param_block") {
        return Some("a statement on the same line as param(...)");
    }
    let starts_after_variable = text
        .get(node.byte_range())
        .is_some_and(|s| s.starts_with('\\'))
        && text.get(..node.start_byte()).is_some_and(|before| {
            let name = before
                .trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            name.len() < before.len() && name.ends_with('$')
        });
    // Within one line only, so that a construct left open across lines is never excused
    // by a path somewhere inside it.
    let holds_variable_path = text.get(node.byte_range()).is_some_and(|s| {
        let s = s.trim_end();
        !s.contains('\n')
            && s.match_indices('$')
                .any(|(i, _)| variable_then_backslash(&s[i..]))
    });
    if starts_after_variable || holds_variable_path {
        return Some("an unquoted path that starts with a variable (`$env:TEMP\\logs`)");
    }
    let parent = node.parent();
    if parent.map(|p| p.kind()) == Some("class_statement")
        && text
            .get(node.byte_range())
            .is_some_and(|s| s.starts_with('.'))
    {
        return Some("a dotted base class name");
    }
    let mut up = parent;
    while let Some(p) = up {
        if matches!(p.kind(), "switch_clause" | "switch_clauses" | "switch_body") {
            return Some("switch clauses on one line without separators");
        }
        up = p.parent();
    }
    None
}

// ---------------------------------------------------------------------------------------
// PowerShell

/// Expression nodes that only wrap one inner node.
const PS_WRAPPERS: &[&str] = &[
    "left_assignment_expression",
    "parenthesized_expression",
    "sub_expression",
    "statement_list",
    "pipeline",
    "pipeline_chain",
    "logical_expression",
    "bitwise_expression",
    "comparison_expression",
    "additive_expression",
    "multiplicative_expression",
    "format_expression",
    "range_expression",
    "array_literal_expression",
    "unary_expression",
    "command_name_expr",
    "argument_expression",
    "logical_argument_expression",
    "bitwise_argument_expression",
    "comparison_argument_expression",
    "additive_argument_expression",
    "multiplicative_argument_expression",
    "format_argument_expression",
    "range_argument_expression",
];

fn unwrap(mut node: Node<'_>) -> Node<'_> {
    while PS_WRAPPERS.contains(&node.kind()) && node.named_child_count() == 1 {
        match node.named_child(0) {
            Some(child) => node = child,
            None => break,
        }
    }
    node
}

/// The argument text of a command, as `args_pattern` sees it: for PowerShell without
/// backtick escapes and line continuations.
pub(crate) fn args_text(lang: Language, text: &str, command: &Command) -> String {
    let raw = text.get(command.args.clone()).unwrap_or("");
    match lang {
        Language::Powershell => unescape_ps(raw),
        _ => raw.to_string(),
    }
}

/// Whether a computed command name is a path to a script or program file.
fn looks_like_path(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let lower = lower.trim_end_matches(['\'', '"', ')', ' ']);
    lower.contains(['\\', '/'])
        && [
            ".exe", ".ps1", ".psm1", ".cmd", ".bat", ".com", ".py", ".sh",
        ]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// Removes backtick escapes and line continuations from argument text.
fn unescape_ps(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '`' {
            match chars.next() {
                Some('\r') => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    out.push(' ');
                }
                Some('\n') => out.push(' '),
                Some(n) => out.push(n),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

struct PsCommands<'a> {
    text: &'a str,
    /// Variables assigned exactly one constant string: (value, was it computed).
    vars: HashMap<String, Option<(String, bool)>>,
    /// Aliases the script defines with Set-Alias/New-Alias.
    aliases: HashMap<String, String>,
}

fn var_name(node: Node<'_>, text: &str) -> Option<String> {
    let node = unwrap(node);
    if node.kind() != "variable" {
        return None;
    }
    let raw = text.get(node.byte_range())?;
    let raw = raw.trim_start_matches('$');
    let raw = raw
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(raw);
    Some(raw.to_lowercase())
}

impl<'a> PsCommands<'a> {
    fn new(text: &'a str, assignments: &[Node<'_>]) -> Self {
        let mut me = PsCommands {
            text,
            vars: HashMap::new(),
            aliases: HashMap::new(),
        };
        for a in assignments {
            let Some(left) = a.named_child(0) else {
                continue;
            };
            let Some(name) = var_name(left, text) else {
                continue;
            };
            let op = a
                .named_child(1)
                .and_then(|o| text.get(o.byte_range()))
                .unwrap_or("");
            let value = a.child_by_field_name("value");
            let evaluated = match (op, value) {
                ("=", Some(v)) => me.eval(v).map(|s| {
                    let inner = unwrap(v).kind();
                    (s, !matches!(inner, "string_literal" | "generic_token"))
                }),
                _ => None,
            };
            let entry = me.vars.entry(name).or_insert_with(|| evaluated.clone());
            if *entry != evaluated {
                *entry = None;
            }
        }
        me
    }

    fn node_text(&self, node: Node<'_>) -> &'a str {
        self.text.get(node.byte_range()).unwrap_or("")
    }

    /// The constant string value of an expression, when it has one.
    fn eval(&self, node: Node<'_>) -> Option<String> {
        let node = unwrap(node);
        let named: Vec<Node<'_>> = {
            let mut c = node.walk();
            node.named_children(&mut c).collect()
        };
        match node.kind() {
            "string_literal" => self.eval(named.first().copied()?),
            "verbatim_string_characters" => {
                let t = self.node_text(node);
                Some(t.strip_prefix('\'')?.strip_suffix('\'')?.replace("''", "'"))
            }
            "expandable_string_literal" => {
                if !named.is_empty() {
                    return None;
                }
                let t = self.node_text(node);
                let inner = t.strip_prefix('"')?.strip_suffix('"')?;
                if inner.contains('$') {
                    return None;
                }
                Some(unescape_ps(&inner.replace("\"\"", "\"")))
            }
            "generic_token" => {
                let t = self.node_text(node);
                (!t.contains('$')).then(|| unescape_ps(t))
            }
            "variable" => {
                let name = var_name(node, self.text)?;
                self.vars.get(&name)?.as_ref().map(|(v, _)| v.clone())
            }
            "additive_expression" | "additive_argument_expression" if named.len() == 2 => {
                let op = node.child(1).map(|o| self.node_text(o))?;
                (op == "+").then_some(())?;
                Some(self.eval(named[0])? + &self.eval(named[1])?)
            }
            "comparison_expression" if named.len() == 3 => {
                let op = self.node_text(named[1]).to_ascii_lowercase();
                match op.as_str() {
                    "-join" => Some(self.eval_list(named[0])?.join(&self.eval(named[2])?)),
                    _ => None,
                }
            }
            "format_expression" if named.len() == 3 => {
                let fmt = self.eval(named[0])?;
                let args = self.eval_list(named[2])?;
                let mut out = fmt;
                for (i, a) in args.iter().enumerate() {
                    out = out.replace(&format!("{{{i}}}"), a);
                }
                Some(out)
            }
            "expression_with_unary_operator" if named.len() == 1 && node.child_count() == 1 => {
                self.eval(named[0])
            }
            "cast_expression" if named.len() == 2 => {
                let ty = self.node_text(named[0]).to_ascii_lowercase();
                let value = unwrap(named[1]);
                match ty.as_str() {
                    "[char]" => {
                        let n: u32 = self.node_text(value).parse().ok()?;
                        char::from_u32(n).map(String::from)
                    }
                    "[string]" => self.eval(value),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn eval_list(&self, node: Node<'_>) -> Option<Vec<String>> {
        let node = unwrap(node);
        if node.kind() == "array_literal_expression" && node.named_child_count() > 1 {
            let mut c = node.walk();
            return node.named_children(&mut c).map(|n| self.eval(n)).collect();
        }
        Some(vec![self.eval(node)?])
    }

    /// The elements of a command: `(parameter name, None)` or `(None, value node)`.
    fn elements<'t>(&self, command: Node<'t>) -> Vec<(Option<String>, Option<Node<'t>>)> {
        let Some(elements) = command.child_by_field_name("command_elements") else {
            return Vec::new();
        };
        let mut c = elements.walk();
        elements
            .named_children(&mut c)
            .filter(|n| n.kind() != "command_argument_sep")
            .map(|n| {
                if n.kind() == "command_parameter" {
                    (
                        Some(
                            self.node_text(n)
                                .trim_start_matches(['-', '\u{2013}', '\u{2014}'])
                                .trim_end_matches(':')
                                .to_ascii_lowercase(),
                        ),
                        None,
                    )
                } else {
                    (None, Some(n))
                }
            })
            .collect()
    }

    /// Records `Set-Alias name value` / `New-Alias -Name n -Value v`.
    fn record_alias(&mut self, command: Node<'_>) {
        let mut name = None;
        let mut value = None;
        let mut positional = Vec::new();
        let mut pending: Option<&str> = None;
        for (param, arg) in self.elements(command) {
            match (param, arg) {
                (Some(p), _) => {
                    pending = if "name".starts_with(&p) {
                        Some("name")
                    } else if "value".starts_with(&p) {
                        Some("value")
                    } else if ["scope", "option", "description"]
                        .iter()
                        .any(|k| k.starts_with(&p))
                    {
                        Some("skip")
                    } else {
                        None
                    };
                }
                (None, Some(n)) => {
                    let v = self.eval(n);
                    match pending.take() {
                        Some("name") => name = v,
                        Some("value") => value = v,
                        Some(_) => {}
                        None => positional.push(v),
                    }
                }
                (None, None) => {}
            }
        }
        let mut positional = positional.into_iter();
        let name = name.or_else(|| positional.next().flatten());
        let value = value.or_else(|| positional.next().flatten());
        if let (Some(n), Some(v)) = (name, value) {
            let target = normalize_ps(&v, Some(&self.aliases));
            self.aliases.insert(ps_base(&n).0, target);
        }
    }

    fn collect(mut self, commands: &[(Node<'_>, usize)]) -> Vec<Command> {
        // Aliases first: PowerShell resolves them at run time, so definition order within
        // the file hardly matters for what an attacker can hide.
        for (c, _) in commands {
            if let Some(n) = c.child_by_field_name("command_name")
                && n.kind() == "command_name"
                && matches!(
                    normalize_ps(self.node_text(n), None).as_str(),
                    "set-alias" | "new-alias"
                )
            {
                self.record_alias(*c);
            }
        }
        commands
            .iter()
            .filter_map(|(c, end)| self.command(*c, *end))
            .collect()
    }

    fn command(&self, node: Node<'_>, end: usize) -> Option<Command> {
        let name_node = node.child_by_field_name("command_name")?;
        let (name, computed, escaped) = self.name_of(name_node);
        Some(Command {
            name,
            // Arguments and the rest of the pipeline (`iwr … | iex`).
            args: name_node.end_byte()..end.max(name_node.end_byte()),
            offset: node.start_byte(),
            computed,
            escaped,
        })
    }

    /// (normalised name, computed, escaped) of a `command_name` / `command_name_expr`.
    fn name_of(&self, node: Node<'_>) -> (Option<String>, bool, bool) {
        if node.kind() == "command_name" {
            let raw = self.node_text(node);
            return (
                Some(normalize_ps(raw, Some(&self.aliases))),
                false,
                raw.contains('`'),
            );
        }
        // After `&` / `.`: look at what the name expression is.
        let inner = node.named_child(0).unwrap_or(node);
        match inner.kind() {
            "command_name" => self.name_of(inner),
            "path_command_name" => {
                let mut c = inner.walk();
                let parts: Vec<Node<'_>> = inner.named_children(&mut c).collect();
                if let [only] = parts.as_slice()
                    && only.kind() == "variable"
                {
                    // `& $cmd`: known when the script assigned it one constant.
                    let known = var_name(*only, self.text)
                        .and_then(|v| self.vars.get(&v).cloned().flatten());
                    return match known {
                        Some((value, computed)) => (
                            Some(normalize_ps(&value, Some(&self.aliases))),
                            computed,
                            false,
                        ),
                        None => (None, false, false),
                    };
                }
                let raw = self.node_text(inner);
                let tail = raw.rsplit(['\\', '/']).next().unwrap_or(raw);
                (
                    Some(normalize_ps(tail, Some(&self.aliases))),
                    false,
                    raw.contains('`'),
                )
            }
            "string_literal" => match self.eval(inner) {
                Some(v) => (Some(normalize_ps(&v, Some(&self.aliases))), false, false),
                None => {
                    // `& "$PSScriptRoot\tool.exe"`: a path built from variables.
                    let raw = self.node_text(inner).trim_matches(['"', '\'']);
                    let tail = raw.rsplit(['\\', '/']).next().unwrap_or(raw);
                    let name = (!tail.contains('$')).then(|| normalize_ps(tail, None));
                    (name, false, false)
                }
            },
            "script_block_expression" | "script_block" | "member_access" => (None, false, false),
            _ => {
                if let Some(name) = self.benign(inner) {
                    return (name, false, false);
                }
                let value = self.eval(inner);
                // `& ($PSScriptRoot + '\tool.exe')` builds a path, not a hidden name.
                let path = looks_like_path(value.as_deref().unwrap_or(self.node_text(inner)));
                let name = value.map(|v| normalize_ps(&v, Some(&self.aliases)));
                (name, !path, false)
            }
        }
    }

    /// `& (Join-Path …)`, `& (Get-Command tool)`: a command yielding a path or a command
    /// by its plain name is not obfuscation. Returns `Some(name)` when benign.
    fn benign(&self, node: Node<'_>) -> Option<Option<String>> {
        let inner = unwrap(node);
        if inner.kind() != "command" {
            return None;
        }
        let name_node = inner.child_by_field_name("command_name")?;
        if name_node.kind() != "command_name" {
            return None;
        }
        let name = normalize_ps(self.node_text(name_node), Some(&self.aliases));
        match name.as_str() {
            "join-path" | "resolve-path" | "split-path" | "convert-path" => Some(None),
            "get-command" => {
                let args: Vec<_> = self.elements(inner);
                let positional: Vec<Node<'_>> = args
                    .iter()
                    .filter_map(|(p, n)| if p.is_none() { *n } else { None })
                    .collect();
                let [only] = positional.as_slice() else {
                    return None;
                };
                let v = self.eval(*only)?;
                if v.contains(['*', '?', '[']) {
                    return None;
                }
                Some(Some(normalize_ps(&v, Some(&self.aliases))))
            }
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shell

/// Whether a child of `node` (or of a string in it) is of `kind`.
fn has_child_kind(node: Node<'_>, kind: &str) -> bool {
    let mut c = node.walk();
    let children: Vec<Node<'_>> = node.named_children(&mut c).collect();
    children
        .into_iter()
        .any(|n| n.kind() == kind || (n.kind() == "string" && has_child_kind(n, kind)))
}

fn shell_commands(text: &str, commands: &[(Node<'_>, usize)]) -> Vec<Command> {
    let mut out = Vec::new();
    for &(node, end) in commands {
        let Some(name_node) = node.child_by_field_name("name") else {
            continue;
        };
        let raw = text.get(name_node.byte_range()).unwrap_or("");
        let computed = has_child_kind(name_node, "command_substitution");
        let dynamic = computed || raw.contains('$');
        let quotes = raw.matches(['"', '\'']).count();
        let fully_quoted = quotes == 2
            && ((raw.starts_with('"') && raw.ends_with('"'))
                || (raw.starts_with('\'') && raw.ends_with('\'')));
        // A leading backslash (`\rm`) only skips aliases; one inside the name hides it.
        let escaped = !dynamic
            && (raw.trim_start_matches('\\').contains('\\') || (quotes > 0 && !fully_quoted));
        let name = (!dynamic).then(|| normalize_shell(raw));
        out.push(Command {
            name: name.clone(),
            args: name_node.end_byte()..end.max(name_node.end_byte()),
            offset: node.start_byte(),
            computed,
            escaped,
        });
        // `sudo curl …`, `env X=1 bash …`: the wrapped command, too.
        if let Some(wrapper) = name.as_deref()
            && SHELL_WRAPPERS.contains(&wrapper)
        {
            let mut c = node.walk();
            let args: Vec<Node<'_>> = node.children_by_field_name("argument", &mut c).collect();
            let mut skip_value = false;
            let mut skipped_positional = false;
            for a in args {
                let t = text.get(a.byte_range()).unwrap_or("");
                if skip_value {
                    skip_value = false;
                    continue;
                }
                if t.starts_with('-') {
                    skip_value = matches!(wrapper, "sudo" | "doas")
                        && matches!(
                            t,
                            "-u" | "-g" | "-C" | "-h" | "-p" | "-r" | "-t" | "-U" | "-D"
                        );
                    continue;
                }
                if wrapper == "env" && t.contains('=') {
                    continue;
                }
                if matches!(wrapper, "timeout" | "nice")
                    && !skipped_positional
                    && t.chars().next().is_some_and(|c| c.is_ascii_digit())
                {
                    skipped_positional = true;
                    continue;
                }
                out.push(Command {
                    name: Some(normalize_shell(t)),
                    args: a.end_byte()..end.max(a.end_byte()),
                    offset: a.start_byte(),
                    computed: false,
                    escaped: false,
                });
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(lang: Language, text: &str) -> Vec<(Option<String>, bool, bool)> {
        parse(lang, text, true)
            .unwrap()
            .commands
            .into_iter()
            .map(|c| (c.name, c.computed, c.escaped))
            .collect()
    }

    fn n(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn powershell_names_are_normalised() {
        let got = names(
            Language::Powershell,
            "i`e`x 'x'\nMicrosoft.PowerShell.Utility\\Invoke-Expression 'x'\n& ('Invoke-' + 'Expression') 'x'\n& ('{0}{1}' -f 'ie','x')\n& (('i','e','x') -join '')\n& ([char]105 + 'ex')\n",
        );
        assert_eq!(
            got,
            vec![
                (n("invoke-expression"), false, true),
                (n("invoke-expression"), false, false),
                (n("invoke-expression"), true, false),
                (n("invoke-expression"), true, false),
                (n("invoke-expression"), true, false),
                (n("invoke-expression"), true, false),
            ]
        );
    }

    #[test]
    fn powershell_variables_aliases_and_benign_calls() {
        let got = names(
            Language::Powershell,
            "$c = 'Invoke-' + 'Expression'\n& $c 'x'\n$exe = 'C:\\t\\tool.exe'\n& $exe -v\nSet-Alias -Name go -Value iex\ngo 'x'\n. $PSScriptRoot\\lib.ps1\n& (Join-Path $PSScriptRoot 'x.ps1')\n& { Get-Date }\n& $unknown\n",
        );
        let got: Vec<_> = got
            .into_iter()
            .filter(|(n, _, _)| {
                n.as_deref() != Some("set-alias")
                    && n.as_deref() != Some("join-path")
                    && n.as_deref() != Some("get-date")
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (n("invoke-expression"), true, false),
                (n("tool"), false, false),
                (n("invoke-expression"), false, false),
                (n("lib.ps1"), false, false),
                (None, false, false),
                (None, false, false),
                (None, false, false),
            ]
        );
    }

    #[test]
    fn shell_names_wrappers_and_pipelines() {
        let text = "curl -fsSL http://x | sudo -u root sh -s\nc\\url x\n$(echo Y3VybA== | base64 -d) x\n\"$PY\" x\n";
        let p = parse(Language::Shell, text, true).unwrap();
        let got: Vec<_> = p
            .commands
            .iter()
            .map(|c| (c.name.clone(), c.computed, c.escaped))
            .collect();
        assert!(got.contains(&(n("curl"), false, false)));
        assert!(got.contains(&(n("sh"), false, false)));
        assert!(got.contains(&(n("curl"), false, true)));
        assert!(got.contains(&(None, true, false)));
        assert!(got.contains(&(None, false, false)));
        let curl = p
            .commands
            .iter()
            .find(|c| c.name.as_deref() == Some("curl"))
            .unwrap();
        assert_eq!(
            args_text(Language::Shell, text, curl),
            " -fsSL http://x | sudo -u root sh -s"
        );
    }

    #[test]
    fn errors_and_known_gaps() {
        let p = parse(
            Language::Powershell,
            "Get-Date\nif ($true) {\n  'x'\n",
            false,
        )
        .unwrap();
        let e = p.error.unwrap();
        assert!(e.known_gap.is_none(), "{e:?}");
        let p = parse(
            Language::Powershell,
            "switch ($x) { 'a' { 1 } 'b' { 2 } }\n",
            false,
        )
        .unwrap();
        assert!(p.error.unwrap().known_gap.is_some());
        let p = parse(Language::Shell, "if true; then\necho x\n", false).unwrap();
        assert_eq!(p.error.unwrap().message, "missing `fi`");
        assert!(
            parse(Language::Shell, "echo ok\n", false)
                .unwrap()
                .error
                .is_none()
        );
        // Valid bash the grammar lacks is a known gap; a real error after it still counts.
        for gap in [
            "X=$((10#$Y))\n",
            "echo \"${A[$n:$a]:-x}\"\n",
            "i=\"${t#s:[}\"; i=\"${i%]}\"\n",
        ] {
            let e = parse(Language::Shell, gap, false).unwrap().error.unwrap();
            assert!(e.known_gap.is_some(), "{gap}: {e:?}");
        }
        let p = parse(
            Language::Shell,
            "if [ 1 ] then echo; fi\nX=$((10#$Y))\n",
            false,
        )
        .unwrap();
        let e = p.error.unwrap();
        assert!(e.known_gap.is_none(), "{e:?}");
        // An error inside a large recovered region is reported where it is.
        let p = parse(
            Language::Shell,
            "set -u\nshopt -s nullglob\ni=\"${t#s:[}\"; i=\"${i%]}\"\n",
            false,
        )
        .unwrap();
        assert!(p.error.unwrap().offset > 20);
    }
}
