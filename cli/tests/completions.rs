//! `weir completions SHELL`: a script each shell accepts, naming every subcommand and
//! flag (checked by loading the bash one into a real bash).

use std::process::Command;

fn completions(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["completions", shell])
        .output()
        .expect("weir runs");
    assert!(out.status.success(), "{shell}: {out:?}");
    String::from_utf8(out.stdout).expect("a script is text")
}

#[test]
fn every_shell_gets_a_script_with_the_commands_and_flags() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = completions(shell);
        for word in ["upload", "datasets", "replay", "bad-rows", "encoding"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
}

#[test]
fn bash_loads_the_script_and_registers_weir() {
    let script = completions("bash");
    let out = Command::new("bash")
        .args(["-c", "eval \"$WEIR_COMPLETIONS\" && complete -p weir"])
        .env("WEIR_COMPLETIONS", script)
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("-F _weir weir"));
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["completions", "tcsh"])
        .output()
        .expect("weir runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"));
}
