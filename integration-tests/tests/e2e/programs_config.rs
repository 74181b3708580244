//! `[program.NAME]` tables that cannot be run: `nrv-center --config FILE` refuses to start,
//! exits 2 and names the problem (issue 13's "a config with a cycle and one with an unknown
//! dependency"). Nothing is bound and nothing is launched.

use integration_tests::{center_command, run, Input, TestDir, WAIT};

/// Runs `nrv-center --config nerve.toml` on `config` (its endpoints in `dir`) and returns
/// its outcome.
fn center_with(dir: &TestDir, config: &str) -> integration_tests::Outcome {
    let text = format!(
        "endpoint = \"{}\"\ncontrol = \"{}\"\nlogfile = \"nerve.log\"\n{config}",
        dir.ipc("n.sock"),
        dir.ipc("c.sock")
    );
    std::fs::write(dir.join("nerve.toml"), text).expect("write nerve.toml");
    run(
        center_command(dir.path(), &["--config", "nerve.toml"]),
        Input::Null,
        WAIT,
        "nrv-center --config nerve.toml",
    )
}

/// The center exited 2 with exactly `want` on stderr, and left no socket and no log behind.
fn assert_refused(dir: &TestDir, out: &integration_tests::Outcome, want: &str) {
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert_eq!(out.stderr, format!("nrv-center: {want}\n"), "{}", out.describe());
    for file in ["n.sock", "c.sock", "nerve.log"] {
        assert!(
            !dir.join(file).exists(),
            "{file} exists: nothing may start before the config is good"
        );
    }
}

#[test]
fn a_dependency_cycle_is_refused_naming_it() {
    let dir = TestDir::new();
    // Lines 4 on: the center's three keys come first.
    let out = center_with(
        &dir,
        "[program.a]\ncommand = [\"sleep\", \"100\"]\ndepends_on = [\"b\"]\n\n[program.b]\ncommand = \"sleep 100\"\ndepends_on = [\"c\"]\n\n[program.c]\ncommand = \"sleep 100\"\ndepends_on = [\"a\"]\n\n[program.free]\ncommand = \"sleep 100\"\n",
    );
    assert_refused(
        &dir,
        &out,
        "nerve.toml line 6: dependency cycle: a -> b -> c -> a: remove one of these depends_on entries",
    );
}

#[test]
fn an_unknown_dependency_is_refused_naming_it() {
    let dir = TestDir::new();
    let out = center_with(
        &dir,
        "[program.db]\ncommand = \"sleep 100\"\n\n[program.web]\ncommand = \"sleep 100\"\nnumprocs = 3\ndepends_on = [\"dbb\"]\n",
    );
    assert_refused(
        &dir,
        &out,
        "nerve.toml line 10: program \"web\" depends on \"dbb\", which is not defined: add [program.dbb] or remove it from depends_on",
    );
}

#[test]
fn a_bad_program_key_is_refused_naming_the_line_the_program_and_the_key() {
    let dir = TestDir::new();
    let out = center_with(&dir, "[program.web]\ncomand = \"sleep 100\"\n");
    assert_refused(
        &dir,
        &out,
        "nerve.toml line 5: [program.web]: unknown key \"comand\" (did you mean \"command\"?)",
    );
    let out = center_with(&dir, "[program.web]\ncommand = \"sleep 100\"\nnumprocs = 0\n");
    assert_refused(
        &dir,
        &out,
        "nerve.toml line 6: [program.web]: numprocs: must be an integer from 1 to 1024, not 0",
    );
}

#[test]
fn a_missing_or_bad_environment_file_is_refused_naming_it_and_its_line() {
    let dir = TestDir::new();
    let env = dir.join("web.env");
    let config = format!(
        "[program.web]\ncommand = \"sleep 100\"\nenvironment_file = \"{}\"\n",
        env.display()
    );
    let out = center_with(&dir, &config);
    assert_refused(
        &dir,
        &out,
        &format!(
            "nerve.toml line 6: [program.web]: environment_file: environment file {0} does not exist: create it, or write \"-{0}\" to go on without it",
            env.display()
        ),
    );
    std::fs::write(&env, "# web\nGREETING=hello\nnot a line\n").expect("write web.env");
    let out = center_with(&dir, &config);
    assert_refused(
        &dir,
        &out,
        &format!(
            "nerve.toml line 6: [program.web]: environment_file: environment file {} line 3: \"not a line\" is not KEY=VALUE",
            env.display()
        ),
    );
}
