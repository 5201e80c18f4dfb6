//! Content rules from policy, compiled once per scanner.
//!
//! Regex rules (`pattern`) are matched within lines of the decoded text. All the
//! patterns that apply to one language are compiled into one multi-pattern automaton,
//! so a file is read once whatever the number of rules; only the rules that matched are
//! searched again, to find their first line and count their matches.
//!
//! "Within a line" is enforced on the pattern itself, as ripgrep does: `\n` is removed
//! from every class (so `\s` and `[^x]` stop at the end of a line), `^`/`$` match at
//! line boundaries (CRLF-aware), and `\b` is the ASCII word boundary, which keeps the
//! automaton a DFA on non-ASCII text.
//!
//! Command rules (`commands`, optional `args_pattern`) are matched on the commands the
//! syntax tree of an entry file yields (see `syntax`), after the same name
//! normalisation: aliases, backticks, paths and `.exe` do not hide a command.

use super::syntax::{self, Command};
use crate::diag::{ConfigError, Location, Severity};
use crate::manifest::Language;
use crate::policy::ContentRule;
use regex_automata::meta::{self, Regex as MetaRegex};
use regex_automata::{Input, MatchKind, PatternSet};
use regex_syntax::hir::{
    Class, ClassBytes, ClassBytesRange, ClassUnicode, ClassUnicodeRange, Hir, HirKind, Look,
};

/// Pseudo-command matching `&`/`.` invocations whose command name is computed.
pub const COMPUTED: &str = "<computed>";
/// Pseudo-command matching command names written with escapes (``i`e`x``, `c\url`).
pub const ESCAPED: &str = "<escaped>";

/// The languages regex rules are compiled for (binary files are not searched).
const TEXT_LANGUAGES: [Language; 4] = [
    Language::Powershell,
    Language::Shell,
    Language::Python,
    Language::Text,
];

fn lang_index(lang: Language) -> Option<usize> {
    TEXT_LANGUAGES.iter().position(|l| *l == lang)
}

/// What a rule says when it matches.
pub(crate) struct RuleInfo {
    pub id: String,
    pub severity: Severity,
    pub message: String,
    pub help: String,
}

/// The regex rules of one language.
struct LanguageSet {
    /// All patterns, for the single pass.
    all: MetaRegex,
    /// Rule index of each pattern id.
    rule_of: Vec<usize>,
    /// Each pattern alone, to locate and count it once it is known to match.
    single: Vec<MetaRegex>,
}

/// A command rule, with its names normalised for one language.
struct CommandRule {
    rule: usize,
    names: Vec<String>,
    computed: bool,
    escaped: bool,
    args: Option<regex::Regex>,
}

/// One rule matching in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    /// Index into the rules.
    pub rule: usize,
    /// Byte offset of the first match in the searched text.
    pub offset: usize,
    /// Number of matches.
    pub count: usize,
}

/// The compiled content rules of a policy.
pub(crate) struct CompiledRules {
    pub info: Vec<RuleInfo>,
    sets: [Option<LanguageSet>; 4],
    commands: [Vec<CommandRule>; 4],
}

/// Parses a rule pattern into a HIR that cannot match across a line break.
fn line_hir(pattern: &str) -> Result<Hir, String> {
    let config = regex_automata::util::syntax::Config::new()
        .multi_line(true)
        .crlf(true);
    let hir =
        regex_automata::util::syntax::parse_with(pattern, &config).map_err(|e| e.to_string())?;
    Ok(within_line(hir))
}

fn within_line(hir: Hir) -> Hir {
    match hir.into_kind() {
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(lit) => {
            if lit.0.contains(&b'\n') {
                Hir::fail()
            } else {
                Hir::literal(lit.0)
            }
        }
        HirKind::Class(Class::Unicode(mut class)) => {
            class.difference(&ClassUnicode::new([ClassUnicodeRange::new('\n', '\n')]));
            Hir::class(Class::Unicode(class))
        }
        HirKind::Class(Class::Bytes(mut class)) => {
            class.difference(&ClassBytes::new([ClassBytesRange::new(b'\n', b'\n')]));
            Hir::class(Class::Bytes(class))
        }
        HirKind::Look(look) => Hir::look(match look {
            Look::WordUnicode => Look::WordAscii,
            Look::WordUnicodeNegate => Look::WordAsciiNegate,
            Look::WordStartUnicode => Look::WordStartAscii,
            Look::WordEndUnicode => Look::WordEndAscii,
            Look::WordStartHalfUnicode => Look::WordStartHalfAscii,
            Look::WordEndHalfUnicode => Look::WordEndHalfAscii,
            other => other,
        }),
        HirKind::Repetition(mut rep) => {
            rep.sub = Box::new(within_line(*rep.sub));
            Hir::repetition(rep)
        }
        HirKind::Capture(mut cap) => {
            cap.sub = Box::new(within_line(*cap.sub));
            Hir::capture(cap)
        }
        HirKind::Concat(subs) => Hir::concat(subs.into_iter().map(within_line).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.into_iter().map(within_line).collect()),
    }
}

fn applies(rule: &ContentRule, lang: Language) -> bool {
    rule.languages.is_empty() || rule.languages.contains(&lang)
}

impl CompiledRules {
    /// Compiles the rules; errors name the rule.
    pub fn new(rules: &[ContentRule]) -> Result<CompiledRules, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let err = |id: &str, msg: String, hint: Option<&str>| {
            ConfigError::new(
                Location::file("policies/"),
                format!("rule `{id}`: {msg}"),
                hint.map(str::to_string),
            )
        };
        let mut hirs: Vec<Option<Hir>> = Vec::new();
        let mut args: Vec<Option<regex::Regex>> = Vec::new();
        for r in rules {
            if r.pattern.is_none() && r.commands.is_empty() {
                errors.push(err(&r.id, "has neither pattern nor commands".into(), None));
            }
            hirs.push(match &r.pattern {
                None => None,
                Some(p) => match line_hir(p) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        errors.push(err(&r.id, format!("invalid pattern: {e}"), None));
                        None
                    }
                },
            });
            args.push(match &r.args_pattern {
                None => None,
                Some(p) => match regex::Regex::new(p) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        errors.push(err(&r.id, format!("invalid args_pattern: {e}"), None));
                        None
                    }
                },
            });
            if r.args_pattern.is_some() && r.commands.is_empty() {
                errors.push(err(
                    &r.id,
                    "args_pattern without commands".into(),
                    Some("list the commands it applies to"),
                ));
            }
            for c in &r.commands {
                if c.starts_with('<') && c != COMPUTED && c != ESCAPED {
                    errors.push(err(
                        &r.id,
                        format!("unknown pseudo-command `{c}`"),
                        Some("the pseudo-commands are `<computed>` and `<escaped>`"),
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let build = |kind: MatchKind, hirs: &[Hir]| {
            meta::Builder::new()
                .configure(
                    meta::Config::new()
                        .match_kind(kind)
                        .hybrid_cache_capacity(8 << 20)
                        .which_captures(regex_automata::nfa::thompson::WhichCaptures::Implicit),
                )
                .build_many_from_hir(hirs)
                .map_err(|e| e.to_string())
        };
        // Each pattern alone, built once and shared by the languages it applies to.
        // Compiling is a noticeable part of a lint (tens of ms), so it runs on every core.
        let compiled = crate::par::map(&hirs, crate::par::cores(), |h| {
            h.as_ref()
                .map(|h| build(MatchKind::LeftmostFirst, std::slice::from_ref(h)))
        });
        let mut singles: Vec<Option<MetaRegex>> = Vec::new();
        for (i, c) in compiled.into_iter().enumerate() {
            singles.push(match c {
                None => None,
                Some(Ok(re)) => Some(re),
                Some(Err(e)) => {
                    errors.push(err(
                        &rules[i].id,
                        format!("pattern does not compile: {e}"),
                        None,
                    ));
                    None
                }
            });
        }
        // Per language: its index, the rule of each pattern, the patterns, each alone.
        type Pending = (usize, Vec<usize>, Vec<Hir>, Vec<MetaRegex>);
        let mut pending: Vec<Pending> = Vec::new();
        let mut sets: [Option<LanguageSet>; 4] = Default::default();
        let mut commands: [Vec<CommandRule>; 4] = Default::default();
        for (li, lang) in TEXT_LANGUAGES.iter().enumerate() {
            let mut rule_of = Vec::new();
            let mut lang_hirs = Vec::new();
            let mut single = Vec::new();
            for (i, r) in rules.iter().enumerate() {
                if let (Some(h), Some(re)) = (&hirs[i], &singles[i])
                    && applies(r, *lang)
                {
                    rule_of.push(i);
                    lang_hirs.push(h.clone());
                    single.push(re.clone());
                }
                if !r.commands.is_empty() && applies(r, *lang) && syntax::has_tree(*lang) {
                    let names = r
                        .commands
                        .iter()
                        .filter(|c| !c.starts_with('<'))
                        .map(|c| syntax::normalize(*lang, c))
                        .collect();
                    commands[li].push(CommandRule {
                        rule: i,
                        names,
                        computed: r.commands.iter().any(|c| c == COMPUTED),
                        escaped: r.commands.iter().any(|c| c == ESCAPED),
                        args: args[i].clone(),
                    });
                }
            }
            if !lang_hirs.is_empty() {
                pending.push((li, rule_of, lang_hirs, single));
            }
        }
        let built = crate::par::map(&pending, crate::par::cores(), |(_, _, hirs, _)| {
            build(MatchKind::All, hirs)
        });
        for ((li, rule_of, _, single), all) in pending.into_iter().zip(built) {
            match all {
                Ok(all) => {
                    sets[li] = Some(LanguageSet {
                        all,
                        rule_of,
                        single,
                    })
                }
                Err(e) => errors.push(err(
                    "*",
                    format!(
                        "the {:?} rules do not compile together: {e}",
                        TEXT_LANGUAGES[li]
                    ),
                    None,
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CompiledRules {
            info: rules
                .iter()
                .map(|r| RuleInfo {
                    id: r.id.clone(),
                    severity: r.severity,
                    message: r.message.clone(),
                    help: r.help.clone(),
                })
                .collect(),
            sets,
            commands,
        })
    }

    /// Whether any command rule applies to `lang`.
    pub fn has_commands(&self, lang: Language) -> bool {
        lang_index(lang).is_some_and(|i| !self.commands[i].is_empty())
    }

    /// The regex rules that match `hay` (text of a file of `lang`), in rule order.
    pub fn match_text(&self, lang: Language, hay: &[u8]) -> Vec<Hit> {
        let Some(set) = lang_index(lang).and_then(|i| self.sets[i].as_ref()) else {
            return Vec::new();
        };
        let mut matched = PatternSet::new(set.all.pattern_len());
        set.all
            .which_overlapping_matches(&Input::new(hay), &mut matched);
        let mut hits: Vec<Hit> = Vec::new();
        for pid in matched.iter() {
            let single = &set.single[pid.as_usize()];
            let mut it = single.find_iter(hay);
            let Some(first) = it.next() else { continue };
            hits.push(Hit {
                rule: set.rule_of[pid.as_usize()],
                offset: first.start(),
                count: 1 + it.count(),
            });
        }
        hits.sort_by_key(|h| h.rule);
        hits
    }

    /// The command rules that match the commands of an entry file of `lang`.
    pub fn match_commands(&self, lang: Language, text: &str, commands: &[Command]) -> Vec<Hit> {
        let Some(rules) = lang_index(lang).map(|i| &self.commands[i]) else {
            return Vec::new();
        };
        let mut hits: Vec<Hit> = Vec::new();
        for rule in rules {
            let mut hit: Option<Hit> = None;
            for c in commands {
                let named = c
                    .name
                    .as_ref()
                    .is_some_and(|n| rule.names.iter().any(|r| r == n));
                let special = (rule.computed && c.computed) || (rule.escaped && c.escaped);
                if !(named || special) {
                    continue;
                }
                // Pseudo-commands match on their own; a named command must pass the args.
                if !special
                    && !rule
                        .args
                        .as_ref()
                        .is_none_or(|re| re.is_match(&syntax::args_text(lang, text, c)))
                {
                    continue;
                }
                match &mut hit {
                    Some(h) => {
                        h.count += 1;
                        h.offset = h.offset.min(c.offset);
                    }
                    None => {
                        hit = Some(Hit {
                            rule: rule.rule,
                            offset: c.offset,
                            count: 1,
                        })
                    }
                }
            }
            hits.extend(hit);
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, pattern: &str) -> ContentRule {
        ContentRule {
            id: id.into(),
            languages: vec![],
            pattern: Some(pattern.into()),
            commands: vec![],
            args_pattern: None,
            severity: Severity::Deny,
            message: "m".into(),
            help: String::new(),
        }
    }

    #[test]
    fn patterns_stay_within_a_line_and_overlap() {
        let rules = CompiledRules::new(&[
            rule("a", r"foo\s+bar"),
            rule("b", r"(?i)o\s*BAR\b"),
            rule("c", r"^baz$"),
            rule("d", r"x[^y]*z"),
        ])
        .unwrap();
        let ids = |text: &str| -> Vec<String> {
            rules
                .match_text(Language::Text, text.as_bytes())
                .into_iter()
                .map(|h| rules.info[h.rule].id.clone())
                .collect()
        };
        assert_eq!(ids("foo bar"), ["a", "b"]);
        assert_eq!(ids("foo\nbar"), Vec::<String>::new());
        assert_eq!(ids("1\r\nbaz\r\n2"), ["c"]);
        assert_eq!(ids("x\nz"), Vec::<String>::new());
        assert_eq!(ids("x z"), ["d"]);
        let hits = rules.match_text(Language::Text, b"\nfoo bar foo  bar");
        assert_eq!((hits[0].offset, hits[0].count), (1, 2));
    }

    #[test]
    fn unknown_pseudo_command_is_an_error() {
        let mut r = rule("x", "y");
        r.commands = vec!["<dynamic>".into()];
        let errs = CompiledRules::new(&[r]).err().unwrap();
        assert!(errs[0].to_string().contains("<dynamic>"));
    }
}
