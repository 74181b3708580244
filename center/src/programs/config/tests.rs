//! Tables for every key, every error, the shell splitting, environment files, the order,
//! cycles, fingerprints and the diff.

use super::*;
use nerve_proto::OsBytes;

/// The programs of `text` as the file `nerve.toml`.
fn programs(text: &str) -> Result<Vec<ProgramDef>, ConfigError> {
    parse(Path::new("nerve.toml"), text)
}

/// The one program of `text`.
fn one(text: &str) -> ProgramDef {
    let mut defs = programs(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(defs.len(), 1, "{defs:?}");
    defs.remove(0)
}

/// The error `text` gives, as printed.
fn error(text: &str) -> String {
    match programs(text) {
        Ok(defs) => panic!("expected an error, got {defs:#?}\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// A program with only a command, as the file gives it.
fn plain(name: &str) -> ProgramDef {
    ProgramDef {
        name: name.into(),
        command: vec!["true".into()],
        numprocs: 1,
        depends_on: vec![],
        autostart: true,
        directory: None,
        environment: vec![],
        ready: ReadyCheck::Started,
        ready_timeout: DEFAULT_READY_TIMEOUT,
        user: None,
        umask: None,
        autorestart: None,
        startsecs: None,
        startretries: None,
        exitcodes: None,
        stopsignal: None,
        stopwaitsecs: None,
        no_killasgroup: false,
        backoff_max: None,
        restart_delay: None,
        adhoc: false,
    }
}

/// `name` depending on `deps`.
fn with_deps(name: &str, deps: &[&str]) -> ProgramDef {
    ProgramDef {
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        ..plain(name)
    }
}

fn os(items: &[&str]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

/// A temporary directory, removed at the end of the test.
fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary directory: {e}"))
}

#[test]
fn every_key_is_read() {
    let defs = programs(
        r#"
[program.db]
command = "postgres -D /var/lib/pg"

[program.web]
command = ["gunicorn", "app:wsgi", "-b", "127.0.0.1:8000"]
numprocs = 3
depends_on = ["db"]
autostart = false
directory = "/srv/web"
environment = { RUST_LOG = "info", PORT = 8000, DEBUG = false }
ready = "tcp://127.0.0.1:8000"
ready_timeout = 12.5
user = "www"
umask = "027"
autorestart = "unexpected"
startsecs = 2
startretries = 5
exitcodes = [0, 2]
stopsignal = "sigint"
stopwaitsecs = 4
no_killasgroup = true
backoff_max = 30
restart_delay = 0.5
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let db = ProgramDef {
        command: os(&["postgres", "-D", "/var/lib/pg"]),
        ..plain("db")
    };
    let web = ProgramDef {
        name: "web".into(),
        command: os(&["gunicorn", "app:wsgi", "-b", "127.0.0.1:8000"]),
        numprocs: 3,
        depends_on: vec!["db".into()],
        autostart: false,
        directory: Some("/srv/web".into()),
        environment: env(&[("DEBUG", "false"), ("PORT", "8000"), ("RUST_LOG", "info")]),
        ready: ReadyCheck::Tcp("127.0.0.1:8000".into()),
        ready_timeout: Duration::from_millis(12_500),
        user: Some("www".into()),
        umask: Some(0o027),
        autorestart: Some("unexpected".into()),
        startsecs: Some(2.0),
        startretries: Some(5),
        exitcodes: Some(vec![0, 2]),
        stopsignal: Some("INT".into()),
        stopwaitsecs: Some(4.0),
        no_killasgroup: true,
        backoff_max: Some(30.0),
        restart_delay: Some(0.5),
        adhoc: false,
    };
    assert_eq!(defs, vec![db, web]);
}

#[test]
fn no_program_tables_are_no_programs_and_a_bare_table_gets_the_defaults() {
    assert_eq!(programs("name = \"c\"\n").map_err(|e| e.to_string()), Ok(vec![]));
    assert_eq!(programs("").map_err(|e| e.to_string()), Ok(vec![]));
    assert_eq!(one("[program.a]\ncommand = [\"true\"]\n"), plain("a"));
    // Dotted keys and inline tables are the same tables.
    assert_eq!(one("program.a.command = [\"true\"]\n"), plain("a"));
    assert_eq!(one("program = { a = { command = \"true\" } }\n"), plain("a"));
}

#[test]
fn the_kebab_case_aliases_are_the_same_keys() {
    let snake = one(
        "[program.a]\ncommand = \"true\"\ndepends_on = []\nenvironment_file = \"-/nonexistent/nerve-env\"\nready_timeout = 3\nno_killasgroup = true\nbackoff_max = 2\nrestart_delay = 1\n",
    );
    let kebab = one(
        "[program.a]\ncommand = \"true\"\ndepends-on = []\nenvironment-file = \"-/nonexistent/nerve-env\"\nready-timeout = 3\nno-killasgroup = true\nbackoff-max = 2\nrestart-delay = 1\n",
    );
    assert_eq!(snake, kebab);
    assert_eq!(
        (
            snake.ready_timeout,
            snake.no_killasgroup,
            snake.backoff_max,
            snake.restart_delay
        ),
        (Duration::from_secs(3), true, Some(2.0), Some(1.0))
    );
}

#[test]
fn each_value_form_of_each_key() {
    // (the lines after `command = "true"`, what the program then is)
    let base = plain("a");
    let table: Vec<(&str, ProgramDef)> = vec![
        (
            "numprocs = 1024",
            ProgramDef {
                numprocs: 1024,
                ..base.clone()
            },
        ),
        ("depends_on = \"a_\"", with_deps("a", &["a_"])),
        ("depends_on = \"b, a_\"", with_deps("a", &["b", "a_"])),
        ("autostart = true", base.clone()),
        (
            "directory = \"rel/dir\"",
            ProgramDef {
                directory: Some("rel/dir".into()),
                ..base.clone()
            },
        ),
        (
            "environment = { A = \"1\", B = 2.5, C = 0x10 }",
            ProgramDef {
                environment: env(&[("A", "1"), ("B", "2.5"), ("C", "16")]),
                ..base.clone()
            },
        ),
        ("ready = \"started\"", base.clone()),
        (
            "ready = \"notify\"",
            ProgramDef {
                ready: ReadyCheck::Notify,
                ..base.clone()
            },
        ),
        (
            "ready = \"tcp://[::1]:5432\"",
            ProgramDef {
                ready: ReadyCheck::Tcp("[::1]:5432".into()),
                ..base.clone()
            },
        ),
        (
            "ready = \"tcp://db.local:1\"",
            ProgramDef {
                ready: ReadyCheck::Tcp("db.local:1".into()),
                ..base.clone()
            },
        ),
        (
            "ready = \"exec:pg_isready  -q -h /tmp\"",
            ProgramDef {
                ready: ReadyCheck::Exec(vec!["pg_isready".into(), "-q".into(), "-h".into(), "/tmp".into()]),
                ..base.clone()
            },
        ),
        (
            "ready_timeout = 1",
            ProgramDef {
                ready_timeout: Duration::from_secs(1),
                ..base.clone()
            },
        ),
        (
            "user = \"1000\"",
            ProgramDef {
                user: Some("1000".into()),
                ..base.clone()
            },
        ),
        (
            "umask = \"0o022\"",
            ProgramDef {
                umask: Some(0o22),
                ..base.clone()
            },
        ),
        (
            "umask = \"0\"",
            ProgramDef {
                umask: Some(0),
                ..base.clone()
            },
        ),
        (
            "umask = 0o077",
            ProgramDef {
                umask: Some(0o77),
                ..base.clone()
            },
        ),
        (
            "umask = \"777\"",
            ProgramDef {
                umask: Some(0o777),
                ..base.clone()
            },
        ),
        (
            "autorestart = \"ALWAYS\"",
            ProgramDef {
                autorestart: Some("always".into()),
                ..base.clone()
            },
        ),
        (
            "autorestart = true",
            ProgramDef {
                autorestart: Some("always".into()),
                ..base.clone()
            },
        ),
        (
            "autorestart = false",
            ProgramDef {
                autorestart: Some("never".into()),
                ..base.clone()
            },
        ),
        (
            "autorestart = \"true\"",
            ProgramDef {
                autorestart: Some("always".into()),
                ..base.clone()
            },
        ),
        (
            "startsecs = 0",
            ProgramDef {
                startsecs: Some(0.0),
                ..base.clone()
            },
        ),
        (
            "startsecs = -0.0",
            ProgramDef {
                startsecs: Some(0.0),
                ..base.clone()
            },
        ),
        (
            "startretries = 0",
            ProgramDef {
                startretries: Some(0),
                ..base.clone()
            },
        ),
        (
            "exitcodes = 3",
            ProgramDef {
                exitcodes: Some(vec![3]),
                ..base.clone()
            },
        ),
        (
            "exitcodes = \"0, 255\"",
            ProgramDef {
                exitcodes: Some(vec![0, 255]),
                ..base.clone()
            },
        ),
        (
            "stopsignal = 9",
            ProgramDef {
                stopsignal: Some("KILL".into()),
                ..base.clone()
            },
        ),
        (
            "stopsignal = \"40\"",
            ProgramDef {
                stopsignal: Some("40".into()),
                ..base.clone()
            },
        ),
        (
            "stopsignal = \"SIGQUIT\"",
            ProgramDef {
                stopsignal: Some("QUIT".into()),
                ..base.clone()
            },
        ),
        (
            "stopwaitsecs = 31536000",
            ProgramDef {
                stopwaitsecs: Some(MAX_SECONDS),
                ..base.clone()
            },
        ),
        ("no_killasgroup = false", base.clone()),
    ];
    for (lines, want) in table {
        let text = format!("[program.a]\ncommand = \"true\"\n{lines}\n[program.a_]\ncommand = \"true\"\n[program.b]\ncommand = \"true\"\n");
        let defs = programs(&text).unwrap_or_else(|e| panic!("{lines}: {e}"));
        assert_eq!(defs[0], want, "{lines}");
    }
}

#[test]
fn every_error_names_the_file_the_line_the_program_and_the_key() {
    let table: &[(&str, &str)] = &[
        // Keys.
        ("[program.web]\ncommand = \"x\"\n\ncomand = \"y\"\n", r#"nerve.toml line 4: [program.web]: unknown key "comand" (did you mean "command"?)"#),
        ("[program.web]\ncommand = \"x\"\nstartsec = 1\n", r#"nerve.toml line 3: [program.web]: unknown key "startsec" (did you mean "startsecs"?)"#),
        ("[program.web]\ncommand = \"x\"\nfrobnicate = 1\n", "nerve.toml line 3: [program.web]: unknown key \"frobnicate\" (the keys are command, numprocs, depends_on, autostart, directory, environment, environment_file, ready, ready_timeout, user, umask, autorestart, startsecs, startretries, exitcodes, stopsignal, stopwaitsecs, no_killasgroup, backoff_max, restart_delay)"),
        ("[program.web]\ncommand = \"x\"\nready_timeout = 1\nready-timeout = 2\n", "nerve.toml line 4: [program.web]: ready_timeout is given twice (as ready_timeout and ready-timeout)"),
        ("[program.web]\nnumprocs = 2\n", r#"nerve.toml line 1: [program.web] has no command: add command = ["PROGRAM", "ARG", …]"#),
        // Names.
        ("[program.\"web:1\"]\ncommand = \"x\"\n", r#"nerve.toml line 1: [program."web:1"]: the name "web:1" cannot hold ":", which separates a program from its process number (web:0)"#),
        ("[program.all]\ncommand = \"x\"\n", r#"nerve.toml line 1: [program.all]: "all" cannot be a program name: nrv-ctl start/stop/restart all means every program"#),
        ("[program.\"\"]\ncommand = \"x\"\n", r#"nerve.toml line 1: [program.""]: a program name cannot be empty"#),
        ("[program.-x]\ncommand = \"x\"\n", r#"nerve.toml line 1: [program.-x]: the name "-x" may hold only ASCII letters, digits, "-", "_" and ".", and not start with "-" or "." "#),
        ("[program.\"a b\"]\ncommand = \"x\"\n", r#"nerve.toml line 1: [program."a b"]: the name "a b" may hold only ASCII letters, digits, "-", "_" and ".", and not start with "-" or "." "#),
        ("[program]\nweb = 1\n", "nerve.toml line 2: [program.web] must be a table of settings, not an integer"),
        ("program = 1\n", "nerve.toml line 1: program must hold tables, one per program: [program.NAME]"),
        // Values.
        ("[program.web]\ncommand = []\n", "nerve.toml line 2: [program.web]: command: must name a program to run, not be empty"),
        ("[program.web]\ncommand = \"  \"\n", "nerve.toml line 2: [program.web]: command: the command is empty"),
        ("[program.web]\ncommand = [\"\", \"x\"]\n", "nerve.toml line 2: [program.web]: command: starts with an empty word: the program to run has no name"),
        ("[program.web]\ncommand = [\"x\", 1]\n", "nerve.toml line 2: [program.web]: command: must be an array of strings, but holds an integer"),
        ("[program.web]\ncommand = 1\n", "nerve.toml line 2: [program.web]: command: must be an array of strings (argv) or a string, not an integer"),
        ("[program.web]\ncommand = \"echo 'hi\"\n", r#"nerve.toml line 2: [program.web]: command: unterminated ' in "echo 'hi""#),
        ("[program.web]\ncommand = \"a | b\"\n", r#"nerve.toml line 2: [program.web]: command: the operator '|' in "a | b" needs a shell: quote it ('|') or write command = ["sh", "-c", "a | b"]"#),
        ("[program.web]\ncommand = \"x\"\nnumprocs = 0\n", "nerve.toml line 3: [program.web]: numprocs: must be an integer from 1 to 1024, not 0"),
        ("[program.web]\ncommand = \"x\"\nnumprocs = 1025\n", "nerve.toml line 3: [program.web]: numprocs: must be an integer from 1 to 1024, not 1025"),
        ("[program.web]\ncommand = \"x\"\nnumprocs = \"3\"\n", "nerve.toml line 3: [program.web]: numprocs: must be an integer from 1 to 1024, not a string"),
        ("[program.web]\ncommand = \"x\"\nnumprocs = 2.5\n", "nerve.toml line 3: [program.web]: numprocs: must be an integer from 1 to 1024, not a float"),
        ("[program.web]\ncommand = \"x\"\ndepends_on = [\"db\", \"db\"]\n[program.db]\ncommand = \"x\"\n", r#"nerve.toml line 3: [program.web]: depends_on: names "db" twice"#),
        ("[program.web]\ncommand = \"x\"\ndepends_on = [\"db:0\"]\n", r#"nerve.toml line 3: [program.web]: depends_on: the name "db:0" cannot hold ":", which separates a program from its process number (web:0)"#),
        ("[program.web]\ncommand = \"x\"\ndepends_on = [1]\n", "nerve.toml line 3: [program.web]: depends_on: must be an array of program names, but holds an integer"),
        ("[program.web]\ncommand = \"x\"\nautostart = \"yes\"\n", "nerve.toml line 3: [program.web]: autostart: must be true or false, not a string"),
        ("[program.web]\ncommand = \"x\"\ndirectory = \"\"\n", "nerve.toml line 3: [program.web]: directory: must be a path, not empty"),
        ("[program.web]\ncommand = \"x\"\nenvironment = \"A=1\"\n", "nerve.toml line 3: [program.web]: environment: must be a table (environment = { KEY = \"value\" }), not a string"),
        ("[program.web]\ncommand = \"x\"\nenvironment = { A = [1] }\n", "nerve.toml line 3: [program.web]: environment: A must be a string, not an array"),
        ("[program.web]\ncommand = \"x\"\nenvironment = { \"A=B\" = \"1\" }\n", r#"nerve.toml line 3: [program.web]: environment: "A=B" cannot be an environment variable's name (empty, or holding "=" or NUL)"#),
        ("[program.web]\ncommand = \"x\"\nenvironment_file = \"-\"\n", "nerve.toml line 3: [program.web]: environment_file: must be a path, not empty"),
        ("[program.web]\ncommand = \"x\"\nenvironment_file = \"/nonexistent/nerve.env\"\n", r#"nerve.toml line 3: [program.web]: environment_file: environment file /nonexistent/nerve.env does not exist: create it, or write "-/nonexistent/nerve.env" to go on without it"#),
        ("[program.web]\ncommand = \"x\"\nready = \"tcp://db\"\n", r#"nerve.toml line 3: [program.web]: ready: "tcp://db": give a host and a port from 1 to 65535, as tcp://127.0.0.1:5432 or tcp://[::1]:5432"#),
        ("[program.web]\ncommand = \"x\"\nready = \"tcp://:5432\"\n", r#"nerve.toml line 3: [program.web]: ready: "tcp://:5432": give a host and a port from 1 to 65535, as tcp://127.0.0.1:5432 or tcp://[::1]:5432"#),
        ("[program.web]\ncommand = \"x\"\nready = \"tcp://db:0\"\n", r#"nerve.toml line 3: [program.web]: ready: "tcp://db:0": give a host and a port from 1 to 65535, as tcp://127.0.0.1:5432 or tcp://[::1]:5432"#),
        ("[program.web]\ncommand = \"x\"\nready = \"tcp://::1:5432\"\n", r#"nerve.toml line 3: [program.web]: ready: "tcp://::1:5432": give a host and a port from 1 to 65535, as tcp://127.0.0.1:5432 or tcp://[::1]:5432"#),
        ("[program.web]\ncommand = \"x\"\nready = \"exec: \"\n", r#"nerve.toml line 3: [program.web]: ready: "exec: ": give the command after exec:, as exec:pg_isready -q"#),
        ("[program.web]\ncommand = \"x\"\nready = \"http://x/health\"\n", r#"nerve.toml line 3: [program.web]: ready: "http://x/health" is not a readiness check: use "started", "tcp://HOST:PORT", "exec:CMD ARGS" or "notify""#),
        ("[program.web]\ncommand = \"x\"\nready = true\n", "nerve.toml line 3: [program.web]: ready: must be a readiness check, not a boolean"),
        ("[program.web]\ncommand = \"x\"\nready_timeout = 0\n", "nerve.toml line 3: [program.web]: ready_timeout: must be a number of seconds above 0 and at most 31536000 (365 days), not 0"),
        ("[program.web]\ncommand = \"x\"\nready_timeout = \"60\"\n", "nerve.toml line 3: [program.web]: ready_timeout: must be a number of seconds above 0, not a string"),
        ("[program.web]\ncommand = \"x\"\nready_timeout = inf\n", "nerve.toml line 3: [program.web]: ready_timeout: must be a number of seconds above 0 and at most 31536000 (365 days), not inf"),
        ("[program.web]\ncommand = \"x\"\nready_timeout = nan\n", "nerve.toml line 3: [program.web]: ready_timeout: must be a number of seconds above 0 and at most 31536000 (365 days), not NaN"),
        ("[program.web]\ncommand = \"x\"\nuser = \"\"\n", r#"nerve.toml line 3: [program.web]: user: must be a user name or uid, not """#),
        ("[program.web]\ncommand = \"x\"\numask = \"999\"\n", r#"nerve.toml line 3: [program.web]: umask: must be an octal string such as "022" (or the TOML octal integer 0o022), not "999""#),
        ("[program.web]\ncommand = \"x\"\numask = \"1000\"\n", r#"nerve.toml line 3: [program.web]: umask: must be an octal string such as "022" (or the TOML octal integer 0o022) from 000 to 777"#),
        ("[program.web]\ncommand = \"x\"\numask = 22\n", r#"nerve.toml line 3: [program.web]: umask: must be an octal string such as "022" (or the TOML octal integer 0o022): 22 is read as decimal, write "022" if octal was meant"#),
        ("[program.web]\ncommand = \"x\"\nautorestart = \"sometimes\"\n", r#"nerve.toml line 3: [program.web]: autorestart: must be never, always or unexpected, not "sometimes""#),
        ("[program.web]\ncommand = \"x\"\nstartsecs = -1\n", "nerve.toml line 3: [program.web]: startsecs: must be a number of seconds, 0 or more and at most 31536000 (365 days), not -1"),
        ("[program.web]\ncommand = \"x\"\nstopwaitsecs = 31536001\n", "nerve.toml line 3: [program.web]: stopwaitsecs: must be a number of seconds, 0 or more and at most 31536000 (365 days), not 31536001"),
        ("[program.web]\ncommand = \"x\"\nbackoff_max = true\n", "nerve.toml line 3: [program.web]: backoff_max: must be a number of seconds, 0 or more, not a boolean"),
        ("[program.web]\ncommand = \"x\"\nrestart_delay = -0.5\n", "nerve.toml line 3: [program.web]: restart_delay: must be a number of seconds, 0 or more and at most 31536000 (365 days), not -0.5"),
        ("[program.web]\ncommand = \"x\"\nstartretries = -1\n", "nerve.toml line 3: [program.web]: startretries: must be an integer, 0 or more, not -1"),
        ("[program.web]\ncommand = \"x\"\nexitcodes = [256]\n", "nerve.toml line 3: [program.web]: exitcodes: must be exit codes from 0 to 255 (exitcodes = [0, 2]); 256 is not one"),
        ("[program.web]\ncommand = \"x\"\nexitcodes = []\n", "nerve.toml line 3: [program.web]: exitcodes: must list at least one of the exit codes from 0 to 255 (exitcodes = [0, 2])"),
        ("[program.web]\ncommand = \"x\"\nexitcodes = \"0,x\"\n", r#"nerve.toml line 3: [program.web]: exitcodes: must be exit codes from 0 to 255 (exitcodes = [0, 2]), not "x""#),
        ("[program.web]\ncommand = \"x\"\nstopsignal = \"TERMX\"\n", r#"nerve.toml line 3: [program.web]: stopsignal: unknown signal "TERMX": use a name such as TERM, SIGTERM or term, or a number from 1 to 64"#),
        ("[program.web]\ncommand = \"x\"\nstopsignal = 65\n", r#"nerve.toml line 3: [program.web]: stopsignal: unknown signal "65": use a name such as TERM, SIGTERM or term, or a number from 1 to 64"#),
        ("[program.web]\ncommand = \"x\"\nno_killasgroup = 1\n", "nerve.toml line 3: [program.web]: no_killasgroup: must be true or false, not an integer"),
        // Dependencies.
        ("[program.db]\ncommand = \"x\"\n\n[program.web]\ncommand = \"x\"\ndepends_on = [\"dbb\"]\n", r#"nerve.toml line 6: program "web" depends on "dbb", which is not defined: add [program.dbb] or remove it from depends_on"#),
        ("[program.a]\ncommand = \"x\"\ndepends_on = [\"b\"]\n[program.b]\ncommand = \"x\"\ndepends_on = [\"c\"]\n[program.c]\ncommand = \"x\"\ndepends_on = [\"a\"]\n", "nerve.toml line 3: dependency cycle: a -> b -> c -> a: remove one of these depends_on entries"),
        ("[program.a]\ncommand = \"x\"\ndepends_on = [\"a\"]\n", "nerve.toml line 3: dependency cycle: a -> a: remove one of these depends_on entries"),
        // TOML itself.
        ("[program.web]\ncommand = \"x\"\n[program.web]\ncommand = \"y\"\n", "nerve.toml line 3: duplicate key"),
    ];
    for (text, want) in table {
        assert_eq!(error(text), want.trim_end(), "{text}");
    }
}

#[test]
fn commands_are_split_as_a_shell_would_or_refused() {
    let ok: &[(&str, &[&str])] = &[
        (
            "gunicorn app:wsgi -b 127.0.0.1:8000",
            &["gunicorn", "app:wsgi", "-b", "127.0.0.1:8000"],
        ),
        ("  a \t b\n c  ", &["a", "b", "c"]),
        ("echo 'a b' \"c d\"", &["echo", "a b", "c d"]),
        ("echo '' \"\"", &["echo", "", ""]),
        ("echo a'b'\"c\"d", &["echo", "abcd"]),
        ("echo 'it'\\''s'", &["echo", "it's"]),
        (
            "echo \"a \\\"q\\\" \\\\ \\$HOME \\` \\x\"",
            &["echo", "a \"q\" \\ $HOME ` \\x"],
        ),
        ("echo a\\ b \\$x \\|", &["echo", "a b", "$x", "|"]),
        ("echo a\\\nb", &["echo", "ab"]),
        ("echo \"a\\\nb\"", &["echo", "ab"]),
        (
            "echo '$HOME * ? [ ~ | ; & < > ( ) `'",
            &["echo", "$HOME * ? [ ~ | ; & < > ( ) `"],
        ),
        ("echo \"* ? [ ~ | ; & < > ( )\"", &["echo", "* ? [ ~ | ; & < > ( )"]),
        ("echo a#b # a comment", &["echo", "a#b"]),
        ("echo x # comment\n y", &["echo", "x", "y"]),
        ("'a'=b", &["a=b"]),
        ("a\\=b", &["a=b"]),
        ("'A=1' env", &["A=1", "env"]),
        ("env A=1", &["env", "A=1"]),
        ("x a~ b=~ '~'", &["x", "a~", "b=~", "~"]),
        ("python3 -c 'print(1)'", &["python3", "-c", "print(1)"]),
        ("naïve ünïcode", &["naïve", "ünïcode"]),
    ];
    for (input, want) in ok {
        let got = split_command(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(got, want.to_vec(), "{input:?}");
    }
    let refused: &[(&str, &str)] = &[
        ("", "the command is empty"),
        ("   # only a comment", "the command is empty"),
        ("echo 'a", "unterminated ' in \"echo 'a\""),
        ("echo \"a", "unterminated \" in \"echo \\\"a\""),
        ("echo \"a\\", "unterminated \" in \"echo \\\"a\\\\\""),
        ("echo a\\", "a backslash ends \"echo a\\\\\": nothing to escape"),
        ("a | b", "the operator '|' in \"a | b\" needs a shell"),
        ("a && b", "the operator '&' in \"a && b\" needs a shell"),
        ("a; b", "the operator ';' in \"a; b\" needs a shell"),
        ("a > f", "the operator '>' in \"a > f\" needs a shell"),
        ("a <f", "the operator '<' in \"a <f\" needs a shell"),
        ("(a)", "the operator '(' in \"(a)\" needs a shell"),
        ("echo $HOME", "expansion '$' in \"echo $HOME\" needs a shell"),
        (
            "echo \"$HOME\"",
            "expansion '$' in \"echo \\\"$HOME\\\"\" needs a shell",
        ),
        (
            "echo `date`",
            "command substitution '`' in \"echo `date`\" needs a shell",
        ),
        (
            "echo \"`date`\"",
            "command substitution '`' in \"echo \\\"`date`\\\"\" needs a shell",
        ),
        ("ls *.log", "the glob '*' in \"ls *.log\" needs a shell"),
        ("ls a?", "the glob '?' in \"ls a?\" needs a shell"),
        ("ls [ab]", "the glob '[' in \"ls [ab]\" needs a shell"),
        ("cd ~/x", "home expansion '~' in \"cd ~/x\" needs a shell"),
        (
            "a=b",
            "\"a=b\" starts with an assignment (a=…), which needs a shell: set it in environment instead",
        ),
        (
            "FOO=bar cmd",
            "\"FOO=bar cmd\" starts with an assignment (FOO=…), which needs a shell: set it in environment instead",
        ),
    ];
    for (input, want) in refused {
        let got = split_command(input).expect_err(input);
        assert!(got.starts_with(want), "{input:?}: {got:?} does not start with {want:?}");
    }
    // The advice is a command line that works.
    assert_eq!(
        split_command("a | b"),
        Err(
            r#"the operator '|' in "a | b" needs a shell: quote it ('|') or write command = ["sh", "-c", "a | b"]"#
                .into()
        )
    );
}

#[test]
fn environment_files_are_read_as_systemd_reads_them() {
    let path = Path::new("web.env");
    let ok: &[(&str, &[(&str, &str)])] = &[
        ("", &[]),
        ("A=1\nB=two words\n", &[("A", "1"), ("B", "two words")]),
        ("# comment\n; comment too\n\n   \nA=1\n", &[("A", "1")]),
        ("  export A=1\nexport\tB=2\n", &[("A", "1"), ("B", "2")]),
        ("exportA=1\n", &[("exportA", "1")]),
        ("A = 1 \n", &[("A", "1")]),
        (
            "A=\"quoted value\"\nB='single'\nC=\"mixed'\nD=\"\"\nE='\n",
            &[
                ("A", "quoted value"),
                ("B", "single"),
                ("C", "\"mixed'"),
                ("D", ""),
                ("E", "'"),
            ],
        ),
        ("A=\"'one level'\"\n", &[("A", "'one level'")]),
        ("A=x=y\n", &[("A", "x=y")]),
        ("A=\n", &[("A", "")]),
        ("A=$HOME \\n #not a comment\n", &[("A", "$HOME \\n #not a comment")]),
        ("A=1\nB=2\nA=3\n", &[("A", "3"), ("B", "2")]),
        ("A=1\r\nB=2\r\n", &[("A", "1"), ("B", "2")]),
        ("_x9=1", &[("_x9", "1")]),
    ];
    for (text, want) in ok {
        assert_eq!(parse_environment_text(path, text), Ok(env(want)), "{text:?}");
    }
    let bad: &[(&str, &str)] = &[
        (
            "A=1\nnot an assignment\n",
            "web.env line 2: \"not an assignment\" is not KEY=VALUE",
        ),
        (
            "9A=1\n",
            "web.env line 1: \"9A\" is not a variable name (letters, digits and _, not starting with a digit)",
        ),
        (
            "A-B=1\n",
            "web.env line 1: \"A-B\" is not a variable name (letters, digits and _, not starting with a digit)",
        ),
        (
            "=1\n",
            "web.env line 1: \"\" is not a variable name (letters, digits and _, not starting with a digit)",
        ),
        ("\n\nA=a\0b\n", "web.env line 3: the value of A holds a NUL byte"),
    ];
    for (text, want) in bad {
        assert_eq!(parse_environment_text(path, text), Err(want.to_string()), "{text:?}");
    }
}

#[test]
fn an_environment_file_is_read_bounded_and_the_table_overrides_it() {
    let dir = tempdir();
    let file = dir.path().join("web.env");
    std::fs::write(
        &file,
        "# the web's\nexport GREETING='hello from the file'\nPORT=1\nONLY_FILE=yes\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "[program.web]\ncommand = \"x\"\nenvironment_file = {:?}\nenvironment = {{ PORT = 8000, ONLY_TABLE = \"t\" }}\n",
        file.display().to_string()
    );
    assert_eq!(
        one(&text).environment,
        env(&[
            ("GREETING", "hello from the file"),
            ("PORT", "8000"),
            ("ONLY_FILE", "yes"),
            ("ONLY_TABLE", "t")
        ]),
        "the file's lines in order, the table over them"
    );

    // "-" ignores a missing file only.
    let missing = dir.path().join("missing.env");
    assert_eq!(read_environment_file(&missing, true), Ok(vec![]));
    assert_eq!(
        read_environment_file(&missing, false),
        Err(format!(
            "environment file {0} does not exist: create it, or write \"-{0}\" to go on without it",
            missing.display()
        ))
    );
    assert_eq!(
        read_environment_file(dir.path(), true),
        Err(format!(
            "cannot read environment file {}: not a regular file",
            dir.path().display()
        ))
    );

    // Bounded: exactly the bound is read, one byte more is refused.
    let big = dir.path().join("big.env");
    let line = format!("A={}\n", "x".repeat(MAX_ENVIRONMENT_FILE_BYTES as usize - 3));
    std::fs::write(&big, &line).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        read_environment_file(&big, false).map(|e| e[0].1.len()),
        Ok(line.len() - 3)
    );
    std::fs::write(&big, format!("{line}B")).unwrap_or_else(|e| panic!("{e}"));
    let too_big = format!(
        "environment file {} is larger than {MAX_ENVIRONMENT_FILE_BYTES} bytes: is it the right file?",
        big.display()
    );
    assert_eq!(read_environment_file(&big, false), Err(too_big));
    // Only regular files: a device is never read, a FIFO never waited on.
    assert_eq!(
        read_environment_file(Path::new("/dev/zero"), false),
        Err("cannot read environment file /dev/zero: not a regular file".into())
    );
    let fifo = dir.path().join("fifo.env");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(
        made.as_ref().is_ok_and(|s| s.success()),
        "mkfifo {}: {made:?}",
        fifo.display()
    );
    assert_eq!(
        read_environment_file(&fifo, false),
        Err(format!(
            "cannot read environment file {}: not a regular file",
            fifo.display()
        )),
    );

    // Not UTF-8, and a bad line: both named with the file's line, under the config's.
    let latin = dir.path().join("latin.env");
    std::fs::write(&latin, b"A=1\nB=caf\xe9\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        read_environment_file(&latin, false),
        Err(format!("environment file {} line 2: not UTF-8", latin.display()))
    );
    std::fs::write(&file, "A=1\n\nB\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        error(&text),
        format!(
            "nerve.toml line 3: [program.web]: environment_file: environment file {} line 3: \"B\" is not KEY=VALUE",
            file.display()
        )
    );
}

#[test]
fn the_start_order_puts_dependencies_first_and_breaks_ties_by_name() {
    let table: Vec<(Vec<ProgramDef>, &[&str])> = vec![
        (vec![], &[]),
        (vec![plain("b"), plain("a"), plain("c")], &["a", "b", "c"]),
        (
            vec![with_deps("web", &["db"]), plain("db"), plain("worker")],
            &["db", "web", "worker"],
        ),
        // a chain against the alphabet
        (
            vec![with_deps("a", &["b"]), with_deps("b", &["c"]), plain("c")],
            &["c", "b", "a"],
        ),
        // a diamond: both middles once the bottom is up, by name; the top last
        (
            vec![
                with_deps("top", &["m2", "m1"]),
                with_deps("m2", &["base"]),
                with_deps("m1", &["base"]),
                plain("base"),
                plain("z"),
            ],
            &["base", "m1", "m2", "top", "z"],
        ),
        // a program free late sorts among those free then, not by name overall
        (vec![with_deps("a", &["z"]), plain("z"), plain("m")], &["m", "z", "a"]),
    ];
    for (defs, want) in table {
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            start_order(&defs),
            Ok(want.iter().map(|s| s.to_string()).collect()),
            "{names:?}"
        );
        let mut reversed: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        reversed.reverse();
        assert_eq!(stop_order(&defs), Ok(reversed), "{names:?}");
        assert_eq!(check_dependencies(&defs), Ok(()));
    }
}

#[test]
fn unknown_dependencies_and_cycles_are_named() {
    let table: Vec<(Vec<ProgramDef>, &str)> = vec![
        (
            vec![with_deps("web", &["dbb"]), plain("db")],
            r#"program "web" depends on "dbb", which is not defined: add [program.dbb] or remove it from depends_on"#,
        ),
        (
            vec![with_deps("b", &["y"]), with_deps("a", &["db", "x"]), plain("db")],
            r#"program "a" depends on "x", which is not defined: add [program.x] or remove it from depends_on"#,
        ),
        (
            vec![with_deps("a", &["a"])],
            "dependency cycle: a -> a: remove one of these depends_on entries",
        ),
        (
            vec![with_deps("a", &["b"]), with_deps("b", &["a"])],
            "dependency cycle: a -> b -> a: remove one of these depends_on entries",
        ),
        (
            vec![with_deps("c", &["a"]), with_deps("a", &["b"]), with_deps("b", &["c"])],
            "dependency cycle: a -> b -> c -> a: remove one of these depends_on entries",
        ),
        // a program waiting on a cycle is not part of it; the cycle starts at its smallest name
        (
            vec![
                with_deps("a", &["x"]),
                with_deps("x", &["y"]),
                with_deps("y", &["z"]),
                with_deps("z", &["x"]),
                plain("free"),
            ],
            "dependency cycle: x -> y -> z -> x: remove one of these depends_on entries",
        ),
        // two cycles: the one reached from the smallest name left
        (
            vec![
                with_deps("p", &["q"]),
                with_deps("q", &["p"]),
                with_deps("b", &["c"]),
                with_deps("c", &["b"]),
            ],
            "dependency cycle: b -> c -> b: remove one of these depends_on entries",
        ),
    ];
    for (defs, want) in table {
        let err = start_order(&defs).expect_err(want);
        assert_eq!(err.to_string(), want);
        assert_eq!(
            check_dependencies(&defs).map_err(|e| e.to_string()),
            Err(want.to_string())
        );
    }
    assert_eq!(
        start_order(&[with_deps("a", &["b"]), with_deps("b", &["a"])]),
        Err(DependencyError::Cycle(vec!["a".into(), "b".into()]))
    );
}

#[test]
fn waiting_for_lists_the_dependencies_not_ready_in_their_order() {
    let web = with_deps("web", &["db", "cache", "queue"]);
    let table: &[(&[&str], &[&str])] = &[
        (&[], &["db", "cache", "queue"]),
        (&["cache"], &["db", "queue"]),
        (&["queue", "db"], &["cache"]),
        (&["db", "cache", "queue", "other"], &[]),
    ];
    for (ready, want) in table {
        let ready: BTreeSet<&str> = ready.iter().copied().collect();
        assert_eq!(
            waiting_for(&web, |d| ready.contains(d)),
            want.to_vec(),
            "ready {ready:?}"
        );
    }
    assert!(waiting_for(&plain("db"), |_| false).is_empty());
}

#[test]
fn fnv_1a_is_the_published_function() {
    // Test vectors of the FNV reference (http://www.isthe.com/chongo/tech/comp/fnv/).
    for (input, want) in [
        ("", 0xcbf2_9ce4_8422_2325u64),
        ("a", 0xaf63_dc4c_8601_ec8c),
        ("foobar", 0x8594_4171_f739_67e8),
    ] {
        let mut h = Fnv(Fnv::OFFSET);
        h.bytes(input.as_bytes());
        assert_eq!(h.0, want, "{input:?}");
    }
}

#[test]
fn fingerprints_are_stable_and_see_every_setting_of_a_process() {
    // The same on every build and Rust version: a change here makes every running program
    // look changed to the next `update` after an upgrade; change it only on purpose.
    assert_eq!(fingerprint(&plain("a")), "94309973e56994bd");
    let full = one(
        "[program.a]\ncommand = \"x y\"\ndirectory = \"/d\"\nenvironment = { A = \"1\" }\nready = \"notify\"\nuser = \"u\"\numask = \"022\"\nautorestart = \"always\"\nstartsecs = 1\nstartretries = 1\nexitcodes = [1]\nstopsignal = \"INT\"\nstopwaitsecs = 1\nno_killasgroup = true\nbackoff_max = 1\nrestart_delay = 1\n",
    );
    assert_eq!(fingerprint(&full), "a91a4560eca615d3");
    assert_eq!(fingerprint(&full).len(), 16);

    // Not in it: the name, numprocs, depends_on, autostart, adhoc, the environment's order.
    let base = ProgramDef {
        environment: env(&[("A", "1"), ("B", "2")]),
        ..plain("a")
    };
    let same: Vec<(&str, ProgramDef)> = vec![
        (
            "name",
            ProgramDef {
                name: "other".into(),
                ..base.clone()
            },
        ),
        (
            "numprocs",
            ProgramDef {
                numprocs: 3,
                ..base.clone()
            },
        ),
        (
            "depends_on",
            ProgramDef {
                depends_on: vec!["db".into()],
                ..base.clone()
            },
        ),
        (
            "autostart",
            ProgramDef {
                autostart: false,
                ..base.clone()
            },
        ),
        (
            "adhoc",
            ProgramDef {
                adhoc: true,
                ..base.clone()
            },
        ),
        (
            "environment order",
            ProgramDef {
                environment: env(&[("B", "2"), ("A", "1")]),
                ..base.clone()
            },
        ),
        (
            "-0 seconds",
            ProgramDef {
                startsecs: Some(-0.0),
                ..ProgramDef {
                    startsecs: Some(0.0),
                    ..base.clone()
                }
            },
        ),
    ];
    let zero = ProgramDef {
        startsecs: Some(0.0),
        ..base.clone()
    };
    for (what, def) in &same {
        let reference = if *what == "-0 seconds" { &zero } else { &base };
        assert_eq!(fingerprint(def), fingerprint(reference), "{what} is not part of it");
    }

    // In it: every one of these, each alone.
    let changed: Vec<(&str, ProgramDef)> = vec![
        (
            "command",
            ProgramDef {
                command: os(&["false"]),
                ..base.clone()
            },
        ),
        (
            "command split",
            ProgramDef {
                command: os(&["tr", "ue"]),
                ..base.clone()
            },
        ),
        (
            "argument boundary",
            ProgramDef {
                command: os(&["true", ""]),
                ..base.clone()
            },
        ),
        (
            "directory",
            ProgramDef {
                directory: Some("/".into()),
                ..base.clone()
            },
        ),
        (
            "environment value",
            ProgramDef {
                environment: env(&[("A", "1"), ("B", "3")]),
                ..base.clone()
            },
        ),
        (
            "environment key",
            ProgramDef {
                environment: env(&[("A", "1"), ("C", "2")]),
                ..base.clone()
            },
        ),
        (
            "environment key/value boundary",
            ProgramDef {
                environment: env(&[("A", "1"), ("B2", "")]),
                ..base.clone()
            },
        ),
        (
            "environment added",
            ProgramDef {
                environment: env(&[("A", "1"), ("B", "2"), ("C", "")]),
                ..base.clone()
            },
        ),
        (
            "ready",
            ProgramDef {
                ready: ReadyCheck::Notify,
                ..base.clone()
            },
        ),
        (
            "ready address",
            ProgramDef {
                ready: ReadyCheck::Tcp("127.0.0.1:2".into()),
                ..base.clone()
            },
        ),
        (
            "ready_timeout",
            ProgramDef {
                ready_timeout: Duration::from_secs(61),
                ..base.clone()
            },
        ),
        (
            "user",
            ProgramDef {
                user: Some("root".into()),
                ..base.clone()
            },
        ),
        (
            "umask",
            ProgramDef {
                umask: Some(0o22),
                ..base.clone()
            },
        ),
        (
            "umask 0",
            ProgramDef {
                umask: Some(0),
                ..base.clone()
            },
        ),
        (
            "autorestart",
            ProgramDef {
                autorestart: Some("always".into()),
                ..base.clone()
            },
        ),
        (
            "startsecs",
            ProgramDef {
                startsecs: Some(1.0),
                ..base.clone()
            },
        ),
        (
            "startretries",
            ProgramDef {
                startretries: Some(3),
                ..base.clone()
            },
        ),
        (
            "exitcodes",
            ProgramDef {
                exitcodes: Some(vec![0]),
                ..base.clone()
            },
        ),
        (
            "exitcodes order",
            ProgramDef {
                exitcodes: Some(vec![2, 0]),
                ..ProgramDef {
                    exitcodes: Some(vec![0, 2]),
                    ..base.clone()
                }
            },
        ),
        (
            "stopsignal",
            ProgramDef {
                stopsignal: Some("TERM".into()),
                ..base.clone()
            },
        ),
        (
            "stopwaitsecs",
            ProgramDef {
                stopwaitsecs: Some(10.0),
                ..base.clone()
            },
        ),
        (
            "no_killasgroup",
            ProgramDef {
                no_killasgroup: true,
                ..base.clone()
            },
        ),
        (
            "backoff_max",
            ProgramDef {
                backoff_max: Some(60.0),
                ..base.clone()
            },
        ),
        (
            "restart_delay",
            ProgramDef {
                restart_delay: Some(0.1),
                ..base.clone()
            },
        ),
    ];
    let mut seen = BTreeSet::from([fingerprint(&base)]);
    for (what, def) in &changed {
        assert!(
            seen.insert(fingerprint(def)),
            "{what} changes the fingerprint, to one no other change gives"
        );
    }
    // Optional fields do not run into each other: the same value in two fields differs.
    assert_ne!(
        fingerprint(&ProgramDef {
            startsecs: Some(1.0),
            ..base.clone()
        }),
        fingerprint(&ProgramDef {
            stopwaitsecs: Some(1.0),
            ..base.clone()
        })
    );
}

#[test]
fn the_diff_names_added_changed_and_removed_programs_sorted() {
    let db = plain("db");
    let web = with_deps("web", &["db"]);
    let worker = plain("worker");
    let adhoc = ProgramDef {
        adhoc: true,
        ..plain("adhoc")
    };
    let changes = |added: &[&str], changed: &[&str], removed: &[&str]| ConfigChanges {
        added: added.iter().map(|s| s.to_string()).collect(),
        changed: changed.iter().map(|s| s.to_string()).collect(),
        removed: removed.iter().map(|s| s.to_string()).collect(),
    };
    let table: Vec<(&str, Vec<ProgramDef>, Vec<ProgramDef>, ConfigChanges)> = vec![
        ("nothing", vec![], vec![], changes(&[], &[], &[])),
        (
            "the same",
            vec![db.clone(), web.clone()],
            vec![web.clone(), db.clone()],
            changes(&[], &[], &[]),
        ),
        (
            "first read",
            vec![],
            vec![worker.clone(), db.clone()],
            changes(&["db", "worker"], &[], &[]),
        ),
        (
            "all gone",
            vec![worker.clone(), db.clone()],
            vec![],
            changes(&[], &[], &["db", "worker"]),
        ),
        (
            "the issue's edit: web's command, worker out, cron in",
            vec![db.clone(), web.clone(), worker.clone()],
            vec![
                db.clone(),
                ProgramDef {
                    command: os(&["gunicorn", "--v2"]),
                    ..web.clone()
                },
                plain("cron"),
            ],
            changes(&["cron"], &["web"], &["worker"]),
        ),
        (
            "numprocs",
            vec![web.clone()],
            vec![ProgramDef {
                numprocs: 3,
                ..web.clone()
            }],
            changes(&[], &["web"], &[]),
        ),
        (
            "depends_on",
            vec![web.clone()],
            vec![ProgramDef {
                depends_on: vec![],
                ..web.clone()
            }],
            changes(&[], &["web"], &[]),
        ),
        (
            "environment",
            vec![web.clone()],
            vec![ProgramDef {
                environment: env(&[("A", "1")]),
                ..web.clone()
            }],
            changes(&[], &["web"], &[]),
        ),
        (
            "autostart alone is no change",
            vec![web.clone()],
            vec![ProgramDef {
                autostart: false,
                ..web.clone()
            }],
            changes(&[], &[], &[]),
        ),
        (
            "ad-hoc programs are not the file's",
            vec![db.clone(), adhoc.clone()],
            vec![db.clone()],
            changes(&[], &[], &[]),
        ),
        (
            "a file program named as an ad-hoc one is added",
            vec![adhoc.clone()],
            vec![plain("adhoc")],
            changes(&["adhoc"], &[], &[]),
        ),
    ];
    for (what, old, new, want) in table {
        assert_eq!(diff(&old, &new), want, "{what}");
    }
}

/// A `RunSpec` of `argv` and `settings`.
fn spec(name: Option<&str>, argv: &[&str], settings: &[(&str, &str)]) -> RunSpec {
    RunSpec {
        name: name.map(str::to_string),
        argv: argv.iter().map(|a| OsBytes::from(*a)).collect(),
        directory: Some(OsBytes::from("/home/me")),
        environment: vec![(OsBytes::from("A"), OsBytes::from("1"))],
        settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

#[test]
fn a_run_spec_is_a_program_with_the_same_keys_as_text() {
    let adhoc = |name: &str, argv: &[&str]| ProgramDef {
        name: name.into(),
        command: os(argv),
        directory: Some("/home/me".into()),
        environment: env(&[("A", "1")]),
        adhoc: true,
        ..plain(name)
    };
    let got = from_run_spec(&spec(Some("adhoc"), &["sleep", "1000"], &[])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, adhoc("adhoc", &["sleep", "1000"]));
    let got = from_run_spec(&spec(None, &["/usr/bin/sleep", "1000"], &[])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got,
        adhoc("sleep", &["/usr/bin/sleep", "1000"]),
        "named after the command's file name"
    );

    let all = [
        ("numprocs", "2"),
        ("depends-on", "db, cache"),
        ("autostart", "false"),
        ("environment_file", "-/nonexistent/nerve.env"),
        ("environment", "B=2"),
        ("environment", "A=3"),
        ("ready", "exec:true"),
        ("ready_timeout", "5"),
        ("user", "nobody"),
        ("umask", "077"),
        ("autorestart", "always"),
        ("startsecs", "0"),
        ("startretries", "7"),
        ("exitcodes", "0,3"),
        ("stopsignal", "HUP"),
        ("stopwaitsecs", "2.5"),
        ("no-killasgroup", "true"),
        ("backoff_max", "9"),
        ("restart-delay", "0.25"),
    ];
    let got = from_run_spec(&spec(Some("x"), &["x"], &all)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got,
        ProgramDef {
            numprocs: 2,
            depends_on: vec!["db".into(), "cache".into()],
            autostart: false,
            environment: env(&[("A", "3"), ("B", "2")]),
            ready: ReadyCheck::Exec(vec!["true".into()]),
            ready_timeout: Duration::from_secs(5),
            user: Some("nobody".into()),
            umask: Some(0o77),
            autorestart: Some("always".into()),
            startsecs: Some(0.0),
            startretries: Some(7),
            exitcodes: Some(vec![0, 3]),
            stopsignal: Some("HUP".into()),
            stopwaitsecs: Some(2.5),
            no_killasgroup: true,
            backoff_max: Some(9.0),
            restart_delay: Some(0.25),
            ..adhoc("x", &["x"])
        }
    );

    // A relative environment file is the program directory's.
    let dir = tempdir();
    std::fs::write(dir.path().join("app.env"), "FROM_FILE=1\n").unwrap_or_else(|e| panic!("{e}"));
    let mut s = spec(Some("x"), &["x"], &[("environment_file", "app.env")]);
    s.directory = Some(OsBytes(dir.path().as_os_str().as_bytes().to_vec()));
    let got = from_run_spec(&s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.environment, env(&[("FROM_FILE", "1"), ("A", "1")]));

    // The command and the directory as settings, for a client that sends them so.
    let mut s = spec(
        Some("sh"),
        &[],
        &[("command", "sh -c 'sleep 1'"), ("directory", "/tmp")],
    );
    s.directory = None;
    let got = from_run_spec(&s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (got.command, got.directory),
        (os(&["sh", "-c", "sleep 1"]), Some("/tmp".into()))
    );
}

#[test]
fn a_bad_run_spec_is_refused_naming_the_setting() {
    let table: Vec<(RunSpec, &str)> = vec![
        (spec(None, &[], &[]), "nrv-ctl run: no command: give it after --, as nrv-ctl run -- sleep 100"),
        (spec(None, &["", "x"], &[]), "nrv-ctl run: the command's first word is empty: give the program to run after --"),
        (spec(Some("all"), &["x"], &[]), "nrv-ctl run: \"all\" cannot be a program name: nrv-ctl start/stop/restart all means every program"),
        (spec(Some("a:1"), &["x"], &[]), "nrv-ctl run: the name \"a:1\" cannot hold \":\", which separates a program from its process number (web:0)"),
        (spec(None, &["./my prog"], &[]), "nrv-ctl run: the name \"my prog\" may hold only ASCII letters, digits, \"-\", \"_\" and \".\", and not start with \"-\" or \".\" (it is the command's file name): give one with --name"),
        (spec(None, &["x"], &[("startsec", "1")]), "nrv-ctl run: unknown key \"startsec\" (did you mean \"startsecs\"?)"),
        (spec(None, &["x"], &[("numprocs", "0")]), "nrv-ctl run: numprocs = \"0\": must be an integer from 1 to 1024, not 0"),
        (spec(None, &["x"], &[("numprocs", "two")]), "nrv-ctl run: numprocs = \"two\": must be an integer from 1 to 1024, not \"two\""),
        (spec(None, &["x"], &[("startsecs", "1"), ("startsecs", "2")]), "nrv-ctl run: startsecs is given twice (as startsecs and startsecs)"),
        (spec(None, &["x"], &[("ready-timeout", "1"), ("ready_timeout", "2")]), "nrv-ctl run: ready_timeout is given twice (as ready-timeout and ready_timeout)"),
        (spec(None, &["x"], &[("autostart", "yes")]), "nrv-ctl run: autostart = \"yes\": must be true or false, not \"yes\""),
        (spec(None, &["x"], &[("ready", "tcp://x")]), "nrv-ctl run: ready = \"tcp://x\": \"tcp://x\": give a host and a port from 1 to 65535, as tcp://127.0.0.1:5432 or tcp://[::1]:5432"),
        (spec(None, &["x"], &[("environment", "NOEQUALS")]), "nrv-ctl run: environment = \"NOEQUALS\": give one variable as KEY=VALUE"),
        (spec(None, &["x"], &[("command", "y")]), "nrv-ctl run: command = \"y\": the command is given after -- already"),
        (spec(None, &["x"], &[("directory", "/y")]), "nrv-ctl run: directory = \"/y\": the directory is given as --directory already"),
        (spec(None, &["x"], &[("environment_file", "/nonexistent/nerve.env")]), "nrv-ctl run: environment_file: environment file /nonexistent/nerve.env does not exist: create it, or write \"-/nonexistent/nerve.env\" to go on without it"),
        (spec(None, &["x"], &[("exitcodes", "")]), "nrv-ctl run: exitcodes = \"\": must be exit codes from 0 to 255 (exitcodes = [0, 2]), not \"\""),
    ];
    for (s, want) in table {
        assert_eq!(
            from_run_spec(&s).map_err(|e| e.to_string()),
            Err(want.to_string()),
            "{s:?}"
        );
    }
}

#[test]
fn load_reads_the_file_again_and_checks_all_of_it() {
    let dir = tempdir();
    let path = dir.path().join("nerve.toml");
    std::fs::write(&path, "name = \"c\"\n\n[program.web]\ncommand = \"x\"\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(load(&path).map(|d| d.len()), Ok(1));
    assert_eq!(
        Settings::load(&path).map(|c| c.name),
        Ok(Some("c".into())),
        "the center's keys beside programs"
    );
    std::fs::write(&path, "heartbeats = 1\n[program.web]\ncommand = \"x\"\n").unwrap_or_else(|e| panic!("{e}"));
    let err = load(&path).expect_err("an unknown center key");
    assert_eq!(
        (err.line, err.message.starts_with("unknown field `heartbeats`")),
        (Some(1), true),
        "{err}"
    );
    std::fs::write(&path, "[program.web]\ncommand = \"x\"\nnumprocs = 0\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        load(&path).map_err(|e| e.to_string()),
        Err(format!(
            "{} line 3: [program.web]: numprocs: must be an integer from 1 to 1024, not 0",
            path.display()
        ))
    );
    let missing = dir.path().join("missing.toml");
    assert!(load(&missing)
        .expect_err("missing")
        .message
        .starts_with("cannot read it: "));
    assert_eq!(
        load(Path::new("/dev/zero")).map_err(|e| e.to_string()),
        Err(format!(
            "/dev/zero: it is larger than {} bytes: is it the right file?",
            crate::config::MAX_CONFIG_BYTES
        ))
    );
}

#[test]
fn the_readme_example_and_the_example_file_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap_or_else(|e| panic!("README.md: {e}"));
    let section = readme
        .split("\n## Programs\n")
        .nth(1)
        .unwrap_or_else(|| panic!("README.md has a Programs section"));
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("the Programs section starts with a toml example"));
    let defs = programs(example).unwrap_or_else(|e| panic!("README's example: {e}"));
    let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["db", "web", "worker"]);
    assert_eq!(
        start_order(&defs),
        Ok(vec!["db".to_string(), "web".into(), "worker".into()])
    );
    assert_eq!(defs[1].numprocs, 3);
    assert_eq!(defs[1].depends_on, ["db"]);
    let file = root.join("examples/nrv-center.toml");
    assert_eq!(
        load(&file).map(|d| d.len()),
        Ok(0),
        "the example's programs are commented out"
    );
    // ... and uncommented, they are good programs.
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    let uncommented: String = text
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .filter(|rest| rest.starts_with('[') || rest.contains(" = "))
                .unwrap_or(l)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let defs =
        programs(&uncommented).unwrap_or_else(|e| panic!("the example's programs, uncommented: {e}\n{uncommented}"));
    assert!(defs.len() >= 2, "{defs:?}");
}
