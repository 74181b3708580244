//! Which processes a name names, for every command that takes one (`ps --name`, `info`,
//! `tail`, `signal`, `send`, `events --id`, …), on the center and in `nrv-ctl` alike.
//!
//! A program of several processes names them `NAME:0`, `NAME:1`, … (supervisord's
//! `process_name = %(program_name)s:%(process_num)d` spelling), and supervisorctl lets
//! `web:*` or `web:` stand for all of them. The rule, in order:
//!
//! 1. `NAME:*` or `NAME:` names the program: `NAME` itself and every `NAME:…`.
//! 2. Otherwise a process whose name is exactly `NAME` wins: a program `web` of one process
//!    and an unrelated `web:0` are told apart.
//! 3. When no name is exactly `NAME`, `NAME` names the program as in 1.
//!
//! A command that acts on one process only (`info`, `tail`, `send`) then needs one match; two
//! or more are ambiguous and the error lists them.

/// The rule of the module doc for one target, fixed against the names there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameFilter<'t> {
    /// The name, without a `:*` or `:` suffix.
    name: &'t str,
    /// The target names a program: `name` and `name:…` (rules 1 and 3).
    program: bool,
}

impl<'t> NameFilter<'t> {
    /// The filter for `target` among `names` (every name it could match, so that rule 2 can
    /// see whether one is exact).
    pub fn new<'n>(target: &'t str, names: impl IntoIterator<Item = &'n str>) -> NameFilter<'t> {
        if let Some(program) = target.strip_suffix(":*").or_else(|| target.strip_suffix(':')) {
            if !program.is_empty() {
                return NameFilter {
                    name: program,
                    program: true,
                };
            }
        }
        let exact = names.into_iter().any(|n| n == target);
        NameFilter {
            name: target,
            program: !exact,
        }
    }

    /// True when `name` is one this filter selects.
    pub fn matches(&self, name: &str) -> bool {
        name == self.name
            || (self.program
                && name
                    .strip_prefix(self.name)
                    .is_some_and(|rest| rest.len() > 1 && rest.starts_with(':')))
    }

    /// True when the target names a program's processes rather than one name (a `NAME:*`, or
    /// no name exactly `NAME`).
    pub fn is_program(&self) -> bool {
        self.program
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (target, names there are, the names it selects).
    #[test]
    fn exact_name_first_then_the_program() {
        let several = ["web:0", "web:1", "webby", "web:x:1", "db"];
        let one = ["web", "web:0", "db"];
        let cases: [(&str, &[&str], &[&str]); 11] = [
            ("web", &several, &["web:0", "web:1", "web:x:1"]),
            ("web:*", &several, &["web:0", "web:1", "web:x:1"]),
            ("web:", &several, &["web:0", "web:1", "web:x:1"]),
            ("web:1", &several, &["web:1"]),
            ("webby", &several, &["webby"]),
            ("we", &several, &[]),
            ("db", &several, &["db"]),
            // An exact name wins over the program's spelling …
            ("web", &one, &["web"]),
            // … unless the program is asked for by name.
            ("web:*", &one, &["web", "web:0"]),
            (":*", &several, &[]),
            ("", &several, &[]),
        ];
        for (target, names, want) in cases {
            let filter = NameFilter::new(target, names.iter().copied());
            let got: Vec<&str> = names.iter().copied().filter(|n| filter.matches(n)).collect();
            assert_eq!(got, want, "{target:?} among {names:?}");
        }
        assert!(NameFilter::new("web", several).is_program());
        assert!(!NameFilter::new("web", one).is_program());
    }
}
