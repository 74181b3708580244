//! Who may use the center over ipc: its own uid and root always, others only by an `--allow`
//! or `--allow-group` rule, with full control or (`:read`) the read commands only.
//!
//! The peer's uid and gid come from the kernel (`SO_PEERCRED`, unix(7)), read when the
//! connection was accepted, so a client cannot claim to be someone else. The rules follow
//! sshd's `AllowUsers`/`AllowGroups` (nothing is allowed that no rule names) and polkit's habit
//! of saying which rule decided. [`decide`] is the whole decision, a pure function; the
//! center only looks the names up once at start ([`Rule::parse`]) and for messages.
//!
//! With any rule the ipc socket files are made 0666 (see `main.rs`): the file's mode can only
//! let everybody in or nobody, so the rules, checked per request, are what keeps others out.
//! tcp peers have no uid: on tcp, CURVE keys (`--authorized-keys`) decide who connects, and
//! the role on each key's line (`role=center|read|control`, [`zmtp::Role`]) what it may do:
//! [`decide_role`], also a pure function. A request a peer center forwards carries its
//! client's role ([`nerve_proto::Caller`]), and the owner decides with the same function.

use std::fmt;
use zmtp::PeerCred;

/// What a rule lets its users do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Every request, and reporting processes on the process endpoint.
    Full,
    /// The read requests only ([`Class::Read`]).
    Read,
}

/// Whom a rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// One user, by uid.
    User(u32),
    /// A group: peers whose primary gid it is, and the listed members (by uid).
    Group {
        /// The group's gid.
        gid: u32,
        /// The uids of the users the group database lists as members.
        members: Vec<u32>,
    },
}

/// One `--allow USER[:read]` or `--allow-group GROUP[:read]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Whom it names.
    pub subject: Subject,
    /// What they may do.
    pub grant: Grant,
    /// The rule as given, for messages (`--allow alice:read`).
    pub text: String,
}

/// A rule that cannot be used: the option as given and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}: {why}")]
pub struct RuleError {
    /// The option as given (`--allow nosuchuser`).
    pub rule: String,
    /// What is wrong.
    pub why: String,
}

impl Rule {
    /// Parses `USER[:read]` (`group` false) or `GROUP[:read]` (`group` true) and looks the name
    /// up in the user or group database. A number is taken as a uid or gid.
    ///
    /// # Errors
    /// An empty name, a suffix other than `:read`, or a name the system does not know.
    pub fn parse(spec: &str, group: bool) -> Result<Rule, RuleError> {
        let flag = if group { "--allow-group" } else { "--allow" };
        let text = format!("{flag} {spec}");
        let err = |why: String| RuleError {
            rule: text.clone(),
            why,
        };
        let (name, grant) = match spec.split_once(':') {
            None => (spec, Grant::Full),
            Some((name, "read")) => (name, Grant::Read),
            Some((_, other)) => {
                return Err(err(format!(
                    "unknown access {other:?}: give NAME for full control or NAME:read for the read commands"
                )))
            }
        };
        if name.is_empty() {
            return Err(err("no name: give a user (--allow) or a group (--allow-group)".into()));
        }
        let subject = if group {
            let entry = zmtp::cred::group(name)
                .or_else(|| {
                    name.parse().ok().map(|gid| zmtp::cred::GroupEntry {
                        gid,
                        members: Vec::new(),
                    })
                })
                .ok_or_else(|| err(format!("no group called {name:?} on this system")))?;
            Subject::Group {
                gid: entry.gid,
                members: entry.members.iter().filter_map(|m| zmtp::cred::user_id(m)).collect(),
            }
        } else {
            let uid = zmtp::cred::user_id(name)
                .or_else(|| name.parse().ok())
                .ok_or_else(|| err(format!("no user called {name:?} on this system")))?;
            Subject::User(uid)
        };
        Ok(Rule { subject, grant, text })
    }

    fn names(&self, cred: &PeerCred) -> bool {
        match &self.subject {
            Subject::User(uid) => cred.uid == *uid,
            Subject::Group { gid, members } => cred.gid == *gid || members.contains(&cred.uid),
        }
    }
}

/// What a request or a connection asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Looking: `ps`, `info`, `tail`, `events`, `ring`, `version`.
    Read,
    /// Steering processes: `signal`, `send`, `stop`, `restart`.
    Control,
    /// Reporting a process on the process endpoint (a watcher).
    Watch,
}

impl Class {
    /// The class of a control request. Every request is named here, so a new one must be
    /// classified before it compiles.
    pub fn of(request: &nerve_proto::Request) -> Class {
        use nerve_proto::Request::*;
        match request {
            Version | Ps { .. } | PsLocal { .. } | Tail { .. } | Events { .. } | Info { .. } | Ring => Class::Read,
            Signal { .. }
            | Send { .. }
            | Stop { .. }
            | Restart { .. }
            | Start { .. }
            | Reread
            | Update
            | Run { .. }
            | Scale { .. } => Class::Control,
        }
    }
}

/// The request's name as `nrv-ctl` spells it (`stop`, `ps`), for messages.
pub fn verb(request: &nerve_proto::Request) -> &'static str {
    use nerve_proto::Request::*;
    match request {
        Version => "version",
        Ps { .. } | PsLocal { .. } => "ps",
        Tail { .. } => "tail",
        Events { .. } => "events",
        Info { .. } => "info",
        Ring => "ring",
        Signal { .. } => "signal",
        Send { .. } => "send",
        Stop { .. } => "stop",
        Restart { .. } => "restart",
        Start { .. } => "start",
        Reread => "reread",
        Update => "update",
        Run { .. } => "run",
        Scale { .. } => "scale",
    }
}

/// Decides whether a client whose key (or forwarded caller) has `role` may do something of
/// `class`: `role=control` everything, `role=read` only [`Class::Read`], `role=center` (a peer
/// center's key) nothing as a client: it is for sync endpoints only.
///
/// # Errors
/// The role that refused, for [`role_refusal`].
pub fn decide_role(role: zmtp::Role, class: Class) -> Result<(), zmtp::Role> {
    match (role, class) {
        (zmtp::Role::Control, _) | (zmtp::Role::Read, Class::Read) => Ok(()),
        (role, _) => Err(role),
    }
}

/// The message for a refusal by [`decide_role`]: `who` (`the key "ops-laptop"`) has `role`,
/// what that role may do, and what it asked (`verb`).
pub fn role_refusal(who: &str, role: zmtp::Role, verb: &str) -> String {
    match role {
        zmtp::Role::Read => format!(
            "{who} has role=read: it may ps, info, tail, events, ring and version, not {verb} (role=control in the authorized keys allows everything)"
        ),
        zmtp::Role::Center => format!(
            "{who} has role=center: it is a peer center's key, for sync endpoints only, and may not be used by a client (not even to {verb}); give this client a key of its own with role=read or role=control"
        ),
        zmtp::Role::Control => format!("{who} has role=control and may {verb}"),
    }
}

/// The role a forwarded caller had, as [`decide_role`] takes it.
pub fn caller_role(role: nerve_proto::CallerRole) -> zmtp::Role {
    match role {
        nerve_proto::CallerRole::Read => zmtp::Role::Read,
        nerve_proto::CallerRole::Control => zmtp::Role::Control,
    }
}

/// The center's access policy on ipc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The uid the center runs as: always allowed (so is root).
    pub owner: u32,
    /// The `--allow` and `--allow-group` rules, in the order given.
    pub rules: Vec<Rule>,
}

impl Policy {
    /// Only the center's own uid and root.
    pub fn owner_only(owner: u32) -> Policy {
        Policy {
            owner,
            rules: Vec::new(),
        }
    }

    /// True when rules let other users in, so the socket files must let them connect.
    pub fn opens_to_others(&self) -> bool {
        !self.rules.is_empty()
    }
}

/// Why a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No rule names the peer.
    NotAllowed {
        /// The peer's uid.
        uid: u32,
        /// The center's uid.
        owner: u32,
    },
    /// Rules name the peer, but only for reading; the first of them.
    ReadOnly {
        /// The peer's uid.
        uid: u32,
        /// The `:read` rule that matched (`--allow alice:read`).
        rule: String,
    },
}

impl Refusal {
    /// The message for the client and the log, with `name` the peer's user name if it has
    /// one. It names the rule that refused and what would allow it.
    pub fn message(&self, name: Option<&str>, class: Class) -> String {
        let who = |uid: u32| match name {
            Some(n) => format!("uid {uid} ({n})"),
            None => format!("uid {uid}"),
        };
        let user = name.map(str::to_string).unwrap_or_else(|| "UID".into());
        let what = match class {
            Class::Read | Class::Control => "use this center",
            Class::Watch => "report processes to this center",
        };
        match self {
            Refusal::NotAllowed { uid, owner } => format!(
                "{} may not {what}: it serves only {} (no --allow or --allow-group rule names this user); its owner can add --allow {user}:read or --allow {user}",
                who(*uid),
                match owner {
                    0 => "root".to_string(),
                    o => format!("{} and root", zmtp::cred::describe_uid(*o)),
                },
            ),
            Refusal::ReadOnly { uid, rule } => match class {
                Class::Watch => format!("{} may only read: {rule}; reporting processes needs full access (--allow {user})", who(*uid)),
                _ => format!("{} may only read: {rule}", who(*uid)),
            },
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message(None, Class::Control))
    }
}

/// Decides whether a peer may do something of `class`.
///
/// `cred` is `None` for tcp peers: allowed here, since CURVE (or `--insecure`) decided at
/// the handshake. Otherwise the center's own uid and root are always allowed; others need a
/// rule that names them (by uid, primary gid or group membership): any full rule allows
/// everything, a `:read` rule only [`Class::Read`].
pub fn decide(policy: &Policy, cred: Option<&PeerCred>, class: Class) -> Result<(), Refusal> {
    let Some(cred) = cred else { return Ok(()) };
    if cred.uid == policy.owner || cred.uid == 0 {
        return Ok(());
    }
    let mut read_only = None;
    for rule in policy.rules.iter().filter(|r| r.names(cred)) {
        match rule.grant {
            Grant::Full => return Ok(()),
            Grant::Read => {
                read_only.get_or_insert(rule);
            }
        }
    }
    match read_only {
        Some(_) if class == Class::Read => Ok(()),
        Some(rule) => Err(Refusal::ReadOnly {
            uid: cred.uid,
            rule: rule.text.clone(),
        }),
        None => Err(Refusal::NotAllowed {
            uid: cred.uid,
            owner: policy.owner,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(uid: u32, gid: u32) -> PeerCred {
        PeerCred { uid, gid, pid: 1 }
    }

    fn rule(subject: Subject, grant: Grant, text: &str) -> Rule {
        Rule {
            subject,
            grant,
            text: text.into(),
        }
    }

    /// Policy, peer (None: tcp), what it asks, the decision.
    type Row<'a> = (&'a Policy, Option<PeerCred>, Class, Result<(), Refusal>);

    #[test]
    fn the_decision_table() {
        let owner_only = Policy::owner_only(500);
        let rules = Policy {
            owner: 500,
            rules: vec![
                rule(Subject::User(1001), Grant::Read, "--allow alice:read"),
                rule(Subject::User(1002), Grant::Full, "--allow bob"),
                rule(
                    Subject::Group {
                        gid: 2000,
                        members: vec![1004],
                    },
                    Grant::Read,
                    "--allow-group ops:read",
                ),
                rule(
                    Subject::Group {
                        gid: 3000,
                        members: vec![1001],
                    },
                    Grant::Full,
                    "--allow-group admins",
                ),
            ],
        };
        let read_only = |uid: u32, rule: &str| Err(Refusal::ReadOnly { uid, rule: rule.into() });
        let not_allowed = |uid: u32| Err(Refusal::NotAllowed { uid, owner: 500 });
        #[rustfmt::skip]
        let table: Vec<Row<'_>> = vec![
            // tcp: CURVE decided already.
            (&owner_only, None, Class::Control, Ok(())),
            // The owner and root, always.
            (&owner_only, Some(cred(500, 500)), Class::Control, Ok(())),
            (&owner_only, Some(cred(0, 0)), Class::Watch, Ok(())),
            // Nobody else by default, not even to read.
            (&owner_only, Some(cred(1001, 1001)), Class::Read, not_allowed(1001)),
            (&owner_only, Some(cred(1001, 1001)), Class::Watch, not_allowed(1001)),
            // :read lets read and nothing else.
            (&rules, Some(cred(1003, 1003)), Class::Read, not_allowed(1003)),
            (&rules, Some(cred(1004, 1004)), Class::Read, Ok(())),
            (&rules, Some(cred(1004, 1004)), Class::Control, read_only(1004, "--allow-group ops:read")),
            (&rules, Some(cred(1005, 2000)), Class::Read, Ok(())),
            (&rules, Some(cred(1005, 2000)), Class::Watch, read_only(1005, "--allow-group ops:read")),
            // A full rule for a user or one of its groups wins over a :read one.
            (&rules, Some(cred(1002, 1002)), Class::Control, Ok(())),
            (&rules, Some(cred(1002, 1002)), Class::Watch, Ok(())),
            (&rules, Some(cred(1001, 1001)), Class::Control, Ok(())),
            (&rules, Some(cred(1006, 3000)), Class::Control, Ok(())),
        ];
        for (i, (policy, cred, class, want)) in table.into_iter().enumerate() {
            assert_eq!(
                decide(policy, cred.as_ref(), class),
                want,
                "row {i}: {cred:?} {class:?}"
            );
        }
    }

    /// Role of the key, what it asks, the decision.
    #[test]
    fn the_role_table() {
        use zmtp::Role::{Center, Control, Read};
        #[rustfmt::skip]
        let table = [
            (Control, Class::Read, Ok(())),
            (Control, Class::Control, Ok(())),
            (Control, Class::Watch, Ok(())),
            (Read, Class::Read, Ok(())),
            (Read, Class::Control, Err(Read)),
            (Read, Class::Watch, Err(Read)),
            (Center, Class::Read, Err(Center)),
            (Center, Class::Control, Err(Center)),
            (Center, Class::Watch, Err(Center)),
        ];
        for (role, class, want) in table {
            assert_eq!(decide_role(role, class), want, "{role} {class:?}");
        }
        assert_eq!(
            role_refusal("the key \"ops-laptop\"", Read, "stop"),
            "the key \"ops-laptop\" has role=read: it may ps, info, tail, events, ring and version, not stop (role=control in the authorized keys allows everything)"
        );
        assert!(role_refusal("the key \"b\"", Center, "ps").contains("has role=center: it is a peer center's key"));
        assert_eq!(caller_role(nerve_proto::CallerRole::Read), Read);
    }

    #[test]
    fn refusals_name_the_rule_and_the_way_in() {
        let read = Refusal::ReadOnly {
            uid: 1001,
            rule: "--allow alice:read".into(),
        };
        assert_eq!(
            read.message(Some("alice"), Class::Control),
            "uid 1001 (alice) may only read: --allow alice:read"
        );
        let none = Refusal::NotAllowed { uid: 1001, owner: 0 };
        assert_eq!(
            none.message(Some("alice"), Class::Read),
            "uid 1001 (alice) may not use this center: it serves only root (no --allow or --allow-group rule names this user); its owner can add --allow alice:read or --allow alice"
        );
        assert!(none
            .message(None, Class::Watch)
            .starts_with("uid 1001 may not report processes"));
    }

    #[test]
    fn rules_parse_names_numbers_and_the_read_suffix() {
        let root = Rule::parse("root:read", false).expect("root exists");
        assert_eq!((root.subject, root.grant), (Subject::User(0), Grant::Read));
        assert_eq!(root.text, "--allow root:read");
        assert_eq!(Rule::parse("4242", false).map(|r| r.subject), Ok(Subject::User(4242)));
        assert!(matches!(
            Rule::parse("root", true).map(|r| r.subject),
            Ok(Subject::Group { gid: 0, .. })
        ));
        for (spec, group, why) in [
            ("", false, "no name"),
            ("root:write", false, "unknown access \"write\""),
            ("no-such-user-here", false, "no user called"),
            ("no-such-group-here:read", true, "no group called"),
        ] {
            let e = Rule::parse(spec, group).expect_err(spec);
            assert!(e.to_string().contains(why), "{spec}: {e}");
        }
    }
}
