//! The options `nrv-center` sets when it launches a program's watcher (`--program
//! NAME:INSTANCE`, `--program-fingerprint HEX16`, `--program-adhoc`, `--program-center NAME`)
//! and `--umask`, parsed into what [`crate::Command`] takes.

use nerve_proto::ProgramTag;

/// The length of a program fingerprint, hex digits (64 bits).
pub const FINGERPRINT_DIGITS: usize = 16;

/// The [`ProgramTag`] of `--program NAME:INSTANCE` and its companions; all `None`/`false`
/// gives `Ok(None)` (a watcher nobody's program).
///
/// # Errors
/// A message naming the option: a companion without `--program`, `--program` without
/// `--program-fingerprint` or `--program-center`, an instance that is not a number, a
/// fingerprint that is not 16 hex digits.
pub fn program_tag(
    program: Option<&str>,
    fingerprint: Option<&str>,
    adhoc: bool,
    center: Option<&str>,
) -> Result<Option<ProgramTag>, String> {
    let Some(program) = program else {
        if fingerprint.is_some() || adhoc || center.is_some() {
            return Err("--program-fingerprint, --program-adhoc and --program-center need --program NAME:INSTANCE (they are set by nrv-center)".into());
        }
        return Ok(None);
    };
    let Some((name, instance)) = program.rsplit_once(':') else {
        return Err(format!(
            "--program {program:?}: expected NAME:INSTANCE (web:0; set by nrv-center)"
        ));
    };
    if name.is_empty() {
        return Err(format!("--program {program:?}: the program's name is empty"));
    }
    let instance: u32 = instance
        .parse()
        .map_err(|_| format!("--program {program:?}: the instance {instance:?} is not a number from 0"))?;
    let Some(fingerprint) = fingerprint else {
        return Err(format!("--program {program} needs --program-fingerprint HEX16"));
    };
    if fingerprint.len() != FINGERPRINT_DIGITS || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "--program-fingerprint {fingerprint:?}: expected {FINGERPRINT_DIGITS} hex digits"
        ));
    }
    let Some(center) = center.filter(|c| !c.is_empty()) else {
        return Err(format!("--program {program} needs --program-center CENTER_NAME"));
    };
    Ok(Some(ProgramTag {
        program: name.to_string(),
        instance,
        fingerprint: fingerprint.to_ascii_lowercase(),
        adhoc,
        center: center.to_string(),
    }))
}

/// A umask written in octal (`022`, `0o027`, `0077`), at most `0777`.
///
/// # Errors
/// Not octal, or above `0777`.
pub fn parse_umask(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mask) if mask <= 0o777 && !digits.is_empty() => Ok(mask),
        _ => Err(format!(
            "--umask {text:?}: expected an octal mask from 000 to 777 (022, 077)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_program_tag_is_read() {
        let tag = program_tag(Some("web:2"), Some("0123456789ABCDEF"), true, Some("c1"))
            .unwrap()
            .unwrap();
        assert_eq!(
            tag,
            ProgramTag {
                program: "web".into(),
                instance: 2,
                fingerprint: "0123456789abcdef".into(),
                adhoc: true,
                center: "c1".into(),
            }
        );
        // A name may hold a colon of its own: the instance is after the last one.
        let tag = program_tag(Some("a:b:0"), Some("0000000000000000"), false, Some("c"))
            .unwrap()
            .unwrap();
        assert_eq!((tag.program.as_str(), tag.instance), ("a:b", 0));
    }

    #[test]
    fn program_tag_errors_name_the_option() {
        let fp = Some("0123456789abcdef");
        type Case<'a> = (Option<&'a str>, Option<&'a str>, bool, Option<&'a str>, &'a str);
        let cases: [Case<'_>; 7] = [
            (None, None, false, None, ""),
            (None, fp, false, None, "need --program NAME:INSTANCE"),
            (None, None, true, None, "need --program NAME:INSTANCE"),
            (Some("web"), fp, false, Some("c"), "expected NAME:INSTANCE"),
            (Some("web:x"), fp, false, Some("c"), "is not a number"),
            (Some("web:0"), Some("12"), false, Some("c"), "expected 16 hex digits"),
            (Some("web:0"), fp, false, None, "needs --program-center"),
        ];
        for (program, fingerprint, adhoc, center, want) in cases {
            let got = program_tag(program, fingerprint, adhoc, center);
            match got {
                Ok(None) => assert_eq!(want, "", "{program:?}"),
                Ok(Some(tag)) => panic!("{program:?}: {tag:?}, wanted an error with {want:?}"),
                Err(e) => assert!(!want.is_empty() && e.contains(want), "{program:?}: {e}"),
            }
        }
        let err = program_tag(Some("web:0"), None, false, Some("c")).unwrap_err();
        assert_eq!(err, "--program web:0 needs --program-fingerprint HEX16");
    }

    #[test]
    fn umasks_are_octal() {
        assert_eq!(parse_umask("022"), Ok(0o022));
        assert_eq!(parse_umask("0o077"), Ok(0o077));
        assert_eq!(parse_umask("7"), Ok(0o007));
        for bad in ["", "8", "1000", "abc", "0o"] {
            assert!(parse_umask(bad).is_err(), "{bad:?}");
        }
    }
}
