//! Approval decisions: does a change carry enough evidence under the rules in effect?
//!
//! Pure functions over data. `quiver-git` reads the evidence out of a commit (is it a
//! merge, its `Approved-by:` trailers, its signature, the authors of the commits it brings
//! in) and asks [`judge`] whether the change is approved; [`removal_held`] guards against a
//! change that removes most of the library at once.
//!
//! The rules, in short:
//! - every matching rule must hold; when no rule matches, [`default_rule`] applies (a merge
//!   commit with one trailer approval by a member who may approve, not an author);
//! - approvers count once per member, however many emails or trailers they appear under;
//! - authors of the change do not count unless the rule allows self-approval;
//! - an approver must be eligible: a member of one of the rule's `approver_roles`, or, when
//!   the rule names none, a member with a role granting `approve` on that script (for a
//!   policy change: on every script, i.e. a role whose `scripts` include `"*"`);
//! - emails that belong to no member are ignored and reported, never counted.

use crate::manifest::Risk;
use crate::policy::{ApprovalRule, EvidenceKind, Member, Permission, Policy};
use serde::{Deserialize, Serialize};

/// What a change changes: one script, or the policy itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A script of the library.
    Script {
        /// Script name.
        name: &'a str,
        /// Its risk level (from the manifest of the new content, or the old one on deletion).
        risk: Risk,
    },
    /// The policy files.
    Policy,
}

/// One `Approved-by:` / `Reviewed-by:` trailer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    /// The trailer key as written (`Approved-by`, `Reviewed-by`).
    pub key: String,
    /// The email it names.
    pub email: String,
}

/// The result of checking the signature of the commit that brought the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureCheck {
    /// Member id whose `signing_keys` hold the signing key, if any.
    pub signer_member: Option<String>,
    /// Whether the signature verifies over the commit.
    pub valid: bool,
    /// What was checked, for messages (e.g. `ssh-ed25519 SHA256:…`, or why it failed).
    #[serde(default)]
    pub detail: String,
}

/// A review read from a forge (GitHub, GitLab, Gitea) for the change's pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgeReview {
    /// Forge name as used in `member.forge` (e.g. `github`).
    pub forge: String,
    /// Login of the reviewer on that forge.
    pub login: String,
    /// Whether the review approves (not merely comments).
    pub approved: bool,
}

/// Everything the commit that brought a change says about its approval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The change entered through a merge commit (not a direct push).
    pub is_merge: bool,
    /// Approval trailers on that commit.
    pub trailers: Vec<Trailer>,
    /// Its signature, when it carries one.
    pub signature: Option<SignatureCheck>,
    /// Reviews from the forge, when a provider is configured.
    pub forge_reviews: Vec<ForgeReview>,
}

/// Who wrote the change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeContext {
    /// Emails of the authors of every commit the change consists of.
    pub authors: Vec<String>,
}

/// The outcome of [`judge`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judgement {
    /// Every applicable rule holds.
    pub approved: bool,
    /// Member ids whose approvals counted, each once, in the order first seen.
    pub approvers: Vec<String>,
    /// The strongest evidence the approval rests on (set when approved).
    pub evidence_kind: Option<EvidenceKind>,
    /// Why it is not approved (empty when approved), or notes about the default rule.
    pub reasons: Vec<String>,
    /// Approvals that were not counted and why (unknown emails, self-approval, ineligible).
    pub ignored: Vec<String>,
}

/// The rule applied when no rule of the policy matches a change: a merge commit with one
/// trailer approval by a member who may approve the script, who is not an author.
pub fn default_rule() -> ApprovalRule {
    ApprovalRule {
        id: Some("default".into()),
        scripts: vec!["*".into()],
        risk: None,
        policy: false,
        min_approvals: 1,
        approver_roles: Vec::new(),
        allow_self_approval: false,
        evidence: EvidenceKind::Trailers,
        require_signature: false,
    }
}

fn rule_label(rule: &ApprovalRule) -> String {
    match &rule.id {
        Some(id) => format!("approval rule `{id}`"),
        None if rule.policy => "the policy approval rule".to_string(),
        None => format!("approval rule for scripts {:?}", rule.scripts),
    }
}

/// Whether a script-name glob covers `name`; `*` is answered without compiling a glob
/// (it is the default of every `scripts` list, and this runs once per change).
pub fn covers(glob: &str, name: &str) -> bool {
    glob == "*" || crate::policy::glob_match(glob, name)
}

/// The approval rules of `policy` that apply to a change of `script` with `risk` (as
/// `Policy::rules_for_script`, with the `*` fast path).
pub fn rules_for_script<'p>(policy: &'p Policy, script: &str, risk: Risk) -> Vec<&'p ApprovalRule> {
    policy
        .approvals
        .iter()
        .filter(|a| {
            !a.policy
                && a.risk.is_none_or(|r| r == risk)
                && a.scripts.iter().any(|s| covers(s, script))
        })
        .collect()
}

fn eligible(policy: &Policy, rule: &ApprovalRule, member: &Member, target: Target<'_>) -> bool {
    if !rule.approver_roles.is_empty() {
        return member.roles.iter().any(|r| rule.approver_roles.contains(r));
    }
    match target {
        Target::Script { name, .. } => policy.roles_of(member).any(|r| {
            r.permissions.contains(&Permission::Approve)
                && r.scripts.iter().any(|s| covers(s, name))
        }),
        Target::Policy => policy.roles_of(member).any(|r| {
            r.permissions.contains(&Permission::Approve) && r.scripts.iter().any(|s| s == "*")
        }),
    }
}

fn push_once(list: &mut Vec<String>, msg: String) {
    if !list.contains(&msg) {
        list.push(msg);
    }
}

/// Judges a change under `rules` (all must hold; none → [`default_rule`]).
pub fn judge(
    policy: &Policy,
    rules: &[&ApprovalRule],
    target: Target<'_>,
    evidence: &Evidence,
    ctx: &ChangeContext,
) -> Judgement {
    let default = default_rule();
    let mut j = Judgement::default();
    let rules: Vec<&ApprovalRule> = if rules.is_empty() {
        vec![&default]
    } else {
        rules.to_vec()
    };
    // Authors as member ids (an author may use any of their emails) and as raw emails.
    let author_emails: Vec<String> = ctx
        .authors
        .iter()
        .map(|e| e.trim().to_ascii_lowercase())
        .collect();
    let author_members: Vec<&str> = ctx
        .authors
        .iter()
        .filter_map(|e| policy.member_by_email(e))
        .map(|m| m.id.as_str())
        .collect();
    let is_author = |m: &Member| {
        author_members.contains(&m.id.as_str())
            || m.emails
                .iter()
                .any(|e| author_emails.contains(&e.to_ascii_lowercase()))
    };
    let mut all_hold = true;
    let mut strongest: Option<EvidenceKind> = None;
    for rule in &rules {
        let label = rule_label(rule);
        let mut holds = true;
        let direct = rule.evidence != EvidenceKind::Forge && !evidence.is_merge;
        if direct {
            holds = false;
            j.reasons.push(format!(
                "{label} needs a merge commit; this change was pushed directly"
            ));
        }
        if rule.require_signature {
            match &evidence.signature {
                None => {
                    holds = false;
                    j.reasons.push(format!(
                        "{label} requires a signed merge commit; it is not signed"
                    ));
                }
                Some(s) if !s.valid => {
                    holds = false;
                    j.reasons.push(format!(
                        "{label} requires a signed merge commit; the signature does not verify ({})",
                        s.detail
                    ));
                }
                Some(s) if s.signer_member.is_none() => {
                    holds = false;
                    j.reasons.push(format!(
                        "{label} requires a signed merge commit; the signing key belongs to no member ({})",
                        s.detail
                    ));
                }
                Some(_) => {}
            }
        }
        if rule.evidence != EvidenceKind::Merge {
            // Candidates: (how they appear in messages, the member if any).
            let candidates: Vec<(String, Option<&Member>)> = match rule.evidence {
                EvidenceKind::Trailers => evidence
                    .trailers
                    .iter()
                    .map(|t| {
                        (
                            format!("{}: {}", t.key, t.email),
                            policy.member_by_email(&t.email),
                        )
                    })
                    .collect(),
                EvidenceKind::Forge => evidence
                    .forge_reviews
                    .iter()
                    .filter(|r| r.approved)
                    .map(|r| {
                        let m = policy.members.iter().find(|m| {
                            m.forge
                                .get(&r.forge)
                                .is_some_and(|l| l.eq_ignore_ascii_case(&r.login))
                        });
                        (format!("{} review by {}", r.forge, r.login), m)
                    })
                    .collect(),
                EvidenceKind::Merge => Vec::new(),
            };
            let mut counted: Vec<&str> = Vec::new();
            for (shown, member) in candidates {
                let Some(m) = member else {
                    push_once(
                        &mut j.ignored,
                        format!("{shown} is not a member of the policy (ignored)"),
                    );
                    continue;
                };
                if counted.contains(&m.id.as_str()) {
                    continue;
                }
                if !rule.allow_self_approval && is_author(m) {
                    push_once(
                        &mut j.ignored,
                        format!(
                            "{shown}: `{}` is an author of the change and {label} forbids self-approval",
                            m.id
                        ),
                    );
                    continue;
                }
                if !eligible(policy, rule, m, target) {
                    let why = if rule.approver_roles.is_empty() {
                        match target {
                            Target::Script { name, .. } => format!("no role of theirs grants `approve` on `{name}`"),
                            Target::Policy => "no role of theirs grants `approve` on all scripts (\"*\"), which policy changes need".to_string(),
                        }
                    } else {
                        format!("not in approver_roles {:?}", rule.approver_roles)
                    };
                    push_once(
                        &mut j.ignored,
                        format!("{shown}: `{}` is not eligible for {label}: {why}", m.id),
                    );
                    continue;
                }
                counted.push(m.id.as_str());
            }
            if (counted.len() as u32) < rule.min_approvals {
                holds = false;
            }
            // A direct push already fails the rule; its count would only repeat that.
            if (counted.len() as u32) < rule.min_approvals && !direct {
                let who = if counted.is_empty() {
                    "none".to_string()
                } else {
                    counted.join(", ")
                };
                let via = match rule.evidence {
                    EvidenceKind::Forge => "forge reviews",
                    _ => "Approved-by/Reviewed-by trailers",
                };
                j.reasons.push(format!(
                    "{label} needs {} approval(s) by eligible members via {via}; counted {} ({who})",
                    rule.min_approvals,
                    counted.len()
                ));
            }
            for c in counted {
                if !j.approvers.iter().any(|a| a == c) {
                    j.approvers.push(c.to_string());
                }
            }
        }
        if holds {
            strongest = strongest.max(Some(rule.evidence));
        }
        all_hold &= holds;
    }
    j.approved = all_hold;
    if all_hold {
        j.evidence_kind = strongest;
        j.reasons.clear();
    }
    j
}

/// Whether a change that removes `removed` of the `scripts_before` scripts must be held
/// under the policy in effect, and why. `approvals` is the number of distinct eligible
/// approvers the change carries.
pub fn removal_held(
    policy: &Policy,
    scripts_before: usize,
    removed: usize,
    approvals: usize,
) -> Option<String> {
    if removed == 0 || scripts_before == 0 {
        return None;
    }
    let guard = &policy.removal;
    let share = removed as f64 / scripts_before as f64;
    if share <= guard.max_share || guard.allow {
        return None;
    }
    if let Some(min) = guard.min_approvals
        && approvals >= min as usize
    {
        return None;
    }
    let more = match guard.min_approvals {
        Some(min) => format!(", or merge it with at least {min} approvals (has {approvals})"),
        None => String::new(),
    };
    Some(format!(
        "held: the change removes {removed} of {scripts_before} scripts ({:.0}%), more than removal.max_share ({:.0}%); \
         approve a policy change setting `removal.allow = true` first{more}",
        share * 100.0,
        guard.max_share * 100.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[[role]]
id = "lead"
permissions = ["author", "approve"]

[[role]]
id = "linux-reviewer"
permissions = ["approve"]
scripts = ["linux-*"]

[[role]]
id = "analyst"
permissions = ["execute"]

[[member]]
id = "alice"
emails = ["alice@example.org", "alice@home.example"]
roles = ["lead"]
forge = { github = "alice-gh" }

[[member]]
id = "bob"
emails = ["bob@example.org"]
roles = ["lead"]
signing_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA bob"]

[[member]]
id = "carol"
emails = ["carol@example.org"]
roles = ["linux-reviewer"]

[[member]]
id = "dave"
emails = ["dave@example.org"]
roles = ["analyst"]
"#;

    fn policy(extra: &str) -> Policy {
        Policy::load(&[
            ("policies/members.toml".into(), POLICY.into()),
            ("policies/approvals.toml".into(), extra.into()),
        ])
        .unwrap_or_else(|e| panic!("{e:?}"))
        .policy
    }

    fn trailers(emails: &[&str]) -> Evidence {
        Evidence {
            is_merge: true,
            trailers: emails
                .iter()
                .map(|e| Trailer {
                    key: "Approved-by".into(),
                    email: e.to_string(),
                })
                .collect(),
            ..Default::default()
        }
    }

    /// One row of the table: policy text, script, evidence, authors → approved, approvers,
    /// and a fragment that must appear in the reasons or ignored list.
    fn check(
        rules: &str,
        script: &str,
        ev: Evidence,
        authors: &[&str],
        approved: bool,
        approvers: &[&str],
        says: &str,
    ) {
        let p = policy(rules);
        let target = if script == "<policy>" {
            Target::Policy
        } else {
            Target::Script {
                name: script,
                risk: Risk::Low,
            }
        };
        let applicable = match target {
            Target::Policy => p.rules_for_policy(),
            Target::Script { name, risk } => p.rules_for_script(name, risk),
        };
        let ctx = ChangeContext {
            authors: authors.iter().map(|a| a.to_string()).collect(),
        };
        let j = judge(&p, &applicable, target, &ev, &ctx);
        assert_eq!(j.approved, approved, "{rules}\n{j:#?}");
        assert_eq!(j.approvers, approvers, "{rules}\n{j:#?}");
        if !says.is_empty() {
            let all = format!("{:?} {:?}", j.reasons, j.ignored);
            assert!(all.contains(says), "expected `{says}` in {all}");
        }
    }

    const TWO: &str = "[[approval]]\nid = \"two\"\nmin_approvals = 2\n";

    #[test]
    fn approval_table() {
        // Default rule: merge + one trailer by a member who may approve.
        check(
            "",
            "ps",
            trailers(&["bob@example.org"]),
            &["alice@example.org"],
            true,
            &["bob"],
            "",
        );
        check(
            "",
            "ps",
            trailers(&[]),
            &["alice@example.org"],
            false,
            &[],
            "needs 1 approval",
        );
        check(
            "",
            "ps",
            Evidence {
                is_merge: false,
                ..trailers(&["bob@example.org"])
            },
            &[],
            false,
            &["bob"],
            "pushed directly",
        );
        // Two approvals; the same member twice (two emails) counts once.
        check(
            TWO,
            "ps",
            trailers(&["alice@example.org", "bob@example.org"]),
            &["x@example.org"],
            true,
            &["alice", "bob"],
            "",
        );
        check(
            TWO,
            "ps",
            trailers(&["alice@example.org", "alice@home.example"]),
            &["x@example.org"],
            false,
            &["alice"],
            "counted 1",
        );
        // Self-approval forbidden by default, under any of the author's emails.
        check(
            TWO,
            "ps",
            trailers(&["alice@example.org", "bob@example.org"]),
            &["alice@home.example"],
            false,
            &["bob"],
            "forbids self-approval",
        );
        check(
            &format!("{TWO}allow_self_approval = true\n"),
            "ps",
            trailers(&["alice@example.org", "bob@example.org"]),
            &["alice@example.org"],
            true,
            &["alice", "bob"],
            "",
        );
        // Eligibility: carol may approve linux-* only; dave has no approve at all.
        check(
            "",
            "linux-ps",
            trailers(&["carol@example.org"]),
            &[],
            true,
            &["carol"],
            "",
        );
        check(
            "",
            "win-ps",
            trailers(&["carol@example.org"]),
            &[],
            false,
            &[],
            "no role of theirs grants `approve` on `win-ps`",
        );
        check(
            "",
            "ps",
            trailers(&["dave@example.org"]),
            &[],
            false,
            &[],
            "not eligible",
        );
        // approver_roles restricts to those roles.
        check(
            "[[approval]]\napprover_roles = [\"linux-reviewer\"]\n",
            "ps",
            trailers(&["bob@example.org"]),
            &[],
            false,
            &[],
            "not in approver_roles",
        );
        check(
            "[[approval]]\napprover_roles = [\"linux-reviewer\"]\n",
            "ps",
            trailers(&["carol@example.org"]),
            &[],
            true,
            &["carol"],
            "",
        );
        // Unknown emails are ignored and reported.
        check(
            "",
            "ps",
            trailers(&["mallory@evil.example", "bob@example.org"]),
            &[],
            true,
            &["bob"],
            "mallory@evil.example is not a member",
        );
        // Merge evidence needs only the merge.
        check(
            "[[approval]]\nevidence = \"merge\"\nmin_approvals = 0\n",
            "ps",
            trailers(&[]),
            &[],
            true,
            &[],
            "",
        );
        check(
            "[[approval]]\nevidence = \"merge\"\nmin_approvals = 0\n",
            "ps",
            Evidence::default(),
            &[],
            false,
            &[],
            "pushed directly",
        );
        // Every matching rule must hold.
        check(
            &format!(
                "{TWO}\n[[approval]]\nid = \"linux\"\nscripts = [\"linux-*\"]\napprover_roles = [\"linux-reviewer\"]\n"
            ),
            "linux-x",
            trailers(&["alice@example.org", "bob@example.org"]),
            &[],
            false,
            &["alice", "bob"],
            "approval rule `linux` needs 1",
        );
        // Policy changes: rules_for_policy, and approvers need approve on "*".
        check(
            "[[approval]]\npolicy = true\nmin_approvals = 2\n",
            "<policy>",
            trailers(&["alice@example.org", "carol@example.org"]),
            &[],
            false,
            &["alice"],
            "which policy changes need",
        );
        check(
            "[[approval]]\npolicy = true\nmin_approvals = 2\n",
            "<policy>",
            trailers(&["alice@example.org", "bob@example.org"]),
            &[],
            true,
            &["alice", "bob"],
            "",
        );
        // Signatures.
        let signed = |valid: bool, signer: Option<&str>| Evidence {
            signature: Some(SignatureCheck {
                signer_member: signer.map(str::to_string),
                valid,
                detail: "k".into(),
            }),
            ..trailers(&["bob@example.org"])
        };
        let sig_rule = "[[approval]]\nrequire_signature = true\n";
        check(
            sig_rule,
            "ps",
            trailers(&["bob@example.org"]),
            &[],
            false,
            &["bob"],
            "it is not signed",
        );
        check(
            sig_rule,
            "ps",
            signed(false, Some("bob")),
            &[],
            false,
            &["bob"],
            "does not verify",
        );
        check(
            sig_rule,
            "ps",
            signed(true, None),
            &[],
            false,
            &["bob"],
            "belongs to no member",
        );
        check(
            sig_rule,
            "ps",
            signed(true, Some("bob")),
            &[],
            true,
            &["bob"],
            "",
        );
        // Forge reviews map logins to members; no merge commit needed (squash merges).
        let forge = Evidence {
            forge_reviews: vec![
                ForgeReview {
                    forge: "github".into(),
                    login: "alice-gh".into(),
                    approved: true,
                },
                ForgeReview {
                    forge: "github".into(),
                    login: "stranger".into(),
                    approved: true,
                },
            ],
            ..Default::default()
        };
        check(
            "[[approval]]\nevidence = \"forge\"\n",
            "ps",
            forge,
            &[],
            true,
            &["alice"],
            "github review by stranger",
        );
    }

    #[test]
    fn evidence_kind_is_the_strongest_rule() {
        let p = policy(
            "[[approval]]\nevidence = \"merge\"\nmin_approvals = 0\n[[approval]]\nid = \"t\"\n",
        );
        let rules = p.rules_for_script("ps", Risk::Low);
        let j = judge(
            &p,
            &rules,
            Target::Script {
                name: "ps",
                risk: Risk::Low,
            },
            &trailers(&["bob@example.org"]),
            &ChangeContext::default(),
        );
        assert!(j.approved);
        assert_eq!(j.evidence_kind, Some(EvidenceKind::Trailers));
    }

    #[test]
    fn removal_guard() {
        let p = policy("");
        assert_eq!(removal_held(&p, 10, 5, 1), None);
        let held = removal_held(&p, 10, 9, 1).expect("held");
        assert!(held.contains("removes 9 of 10 scripts (90%)"), "{held}");
        let p = policy("[removal]\nallow = true\n");
        assert_eq!(removal_held(&p, 10, 9, 0), None);
        let p = policy("[removal]\nmin_approvals = 3\n");
        assert!(removal_held(&p, 10, 9, 2).is_some());
        assert_eq!(removal_held(&p, 10, 9, 3), None);
        assert_eq!(removal_held(&p, 0, 0, 0), None);
    }
}
