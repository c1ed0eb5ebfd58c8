//! The walk-throughs in the README and in `docs/` run as written. Every ```` ```sh ```` block
//! after a `<!-- walkthrough -->` line is run by bash (`set -euo pipefail`), command after
//! command (a command goes on over lines ending in a backslash, through a heredoc, or to the
//! `done` of a `for …; do` loop), in a fresh directory beside a filedock server started there on
//! the embedded default; the output of each command followed by `# → …` lines must be exactly
//! that (compared as JSON when it is JSON). Two things differ from a reader's terminal, and only
//! these: the server listens on a free port rather than 8080 (the address is replaced in the
//! text), and `cargo run … -p filedock -- ARGS` runs the binary these tests built (not a release
//! build). Needs curl, jq and, for tus, tuspy (scripts/test installs what is missing).

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

#[derive(Debug)]
struct Step {
    command: String,
    expect: Vec<String>,
}

/// The marked blocks of a Markdown text, as steps.
fn walkthroughs(md: &str) -> Vec<Vec<Step>> {
    let mut blocks = Vec::new();
    let mut lines = md.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "<!-- walkthrough -->" {
            continue;
        }
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```sh"),
            "a walkthrough marker is followed by a sh block, not {fence:?}"
        );
        let mut steps: Vec<Step> = Vec::new();
        let mut continued: Option<String> = None;
        let mut heredoc: Option<String> = None;
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            if let Some(end) = &heredoc {
                let step = steps.last_mut().unwrap();
                step.command.push('\n');
                step.command.push_str(l);
                if l == end {
                    heredoc = None;
                }
                continue;
            }
            if let Some(c) = continued.as_mut() {
                c.push('\n');
                c.push_str(l);
                if !l.ends_with('\\') {
                    steps.push(Step {
                        command: continued.take().unwrap(),
                        expect: Vec::new(),
                    });
                }
                continue;
            }
            let t = l.trim_start();
            if let Some(answer) = t.strip_prefix("# → ") {
                let step = steps.last_mut().expect("an answer follows a command");
                step.expect.push(answer.to_owned());
                continue;
            }
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if l.ends_with('\\') {
                continued = Some(l.to_owned());
                continue;
            }
            if let Some(at) = l.find("<<'") {
                heredoc = l[at + 3..].split('\'').next().map(str::to_owned);
            } else if l.ends_with("; do") {
                // A loop: its body and `done` belong to it.
                heredoc = Some("done".to_owned());
            }
            steps.push(Step {
                command: l.to_owned(),
                expect: Vec::new(),
            });
        }
        assert!(
            continued.is_none() && heredoc.is_none(),
            "a block ends inside a command"
        );
        blocks.push(steps);
    }
    blocks
}

fn same(expected: &str, got: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(expected),
        serde_json::from_str::<serde_json::Value>(got),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => expected.trim_end() == got.trim_end(),
    }
}

/// Runs one block's steps against a new server; panics naming the step that failed.
fn run(source: &str, steps: &[Step]) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("filedock-data"));
    let out: PathBuf = dir.path().join(".walkthrough");
    std::fs::create_dir(&out).unwrap();
    let bin = env!("CARGO_BIN_EXE_filedock");
    let mut script = format!(
        "set -euo pipefail\n\
         cargo() {{ if [ \"$1\" != run ]; then command cargo \"$@\"; return; fi; \
         while [ \"$1\" != -- ]; do shift; done; shift; \"{bin}\" \"$@\"; }}\n"
    );
    for (i, step) in steps.iter().enumerate() {
        let command = step.command.replace("http://127.0.0.1:8080", &server.base);
        script += &format!("echo {i} > \"$OUT/at\"\n{{\n{command}\n}} > \"$OUT/{i}\"\n");
    }
    script += "echo done > \"$OUT/at\"\n";
    let ran = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("OUT", &out)
        .output()
        .unwrap();
    let at = std::fs::read_to_string(out.join("at")).unwrap_or_default();
    let output = |i: usize| std::fs::read_to_string(out.join(i.to_string())).unwrap_or_default();
    if !ran.status.success() {
        let i: usize = at.trim().parse().unwrap_or(0);
        panic!(
            "{source}: step {} failed ({}):\n{}\nits output: {}\nstderr: {}",
            i + 1,
            ran.status,
            steps[i].command,
            output(i),
            String::from_utf8_lossy(&ran.stderr)
        );
    }
    assert_eq!(at.trim(), "done");
    let mut checked = 0;
    for (i, step) in steps.iter().enumerate() {
        if step.expect.is_empty() {
            continue;
        }
        let expected = step.expect.join("\n");
        let got = output(i);
        assert!(
            same(&expected, &got),
            "{source}: step {} answered\n{got}\nnot\n{expected}\n(the command: {})",
            i + 1,
            step.command
        );
        checked += 1;
    }
    assert!(checked > 0, "{source}: a walkthrough without a single checked answer");
}

fn run_file(rel: &str) -> usize {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel);
    let md = std::fs::read_to_string(&path).unwrap();
    let blocks = walkthroughs(&md);
    for (n, steps) in blocks.iter().enumerate() {
        run(&format!("{rel}, walkthrough {}", n + 1), steps);
    }
    blocks.len()
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    assert_eq!(run_file("README.md"), 1, "the README has one walkthrough");
}

#[test]
fn the_large_file_walkthroughs_run_as_written() {
    assert!(run_file("docs/large-files.md") >= 2, "multipart and tus");
}

#[test]
fn a_walkthrough_is_read_command_by_command() {
    let md = "text\n<!-- walkthrough -->\n```sh\n# a comment\nA=1\ncurl -x \\\n  y\n# → {\"a\": 1}\n# → \
              two\npython3 - <<'EOF'\nprint(1)\nEOF\n# → 1\nfor n in 1 2; do\n  echo $n\ndone\n```\n";
    let blocks = walkthroughs(md);
    assert_eq!(blocks.len(), 1);
    let s = &blocks[0];
    assert_eq!(s.len(), 4);
    assert_eq!(s[0].command, "A=1");
    assert_eq!(s[1].command, "curl -x \\\n  y");
    assert_eq!(s[1].expect, vec!["{\"a\": 1}".to_owned(), "two".to_owned()]);
    assert_eq!(s[2].command, "python3 - <<'EOF'\nprint(1)\nEOF");
    assert_eq!(s[2].expect, vec!["1".to_owned()]);
    assert_eq!(s[3].command, "for n in 1 2; do\n  echo $n\ndone");
    assert!(same("{\"a\": 1}", "{\"a\":1}\n"));
    assert!(!same("{\"a\": 1}", "{\"a\":2}"));
    assert!(!same("hello", "hell"));
}
