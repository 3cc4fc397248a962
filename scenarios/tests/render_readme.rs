//! The chart README's own commands, executed (audit C2: the documented install command set
//! `postgresql.password`, a key no template reads). Every `helm install` and `helm upgrade`
//! in the README's `sh` blocks is rendered with `helm template`, its shell words evaluated
//! as a shell would; a construct this test cannot evaluate fails it rather than being
//! skipped. A block of flags only (`--set ...` lines) is what the README says to add to
//! the install before it, and is rendered as that install with those flags.

mod support;

use std::collections::HashMap;

use certctl_scenarios::modes::chart_dir;
use certctl_scenarios::render::Render;
use serde_json::Value;
use support::render_all;

/// One `--set` or `--set-json` of a command.
#[derive(Debug, Clone, PartialEq)]
enum Set {
    Text(String, String),
    Json(String, Value),
}

/// One `helm install|upgrade` of the README.
#[derive(Debug, Clone)]
struct HelmCommand {
    line: String,
    upgrade: bool,
    release: String,
    namespace: String,
    sets: Vec<Set>,
}

/// The contents of every ```sh fence.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Lines with their `\`-newline continuations joined.
fn logical_lines(block: &str) -> Vec<String> {
    block.replace("\\\n", " ").lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect()
}

/// A shell line's words: quotes removed, `$VAR` and `$(openssl rand -hex N)` expanded.
fn words(line: &str, vars: &HashMap<String, String>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('\''), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (_, '\\') => word.get_or_insert_with(String::new).extend(chars.next()),
            (_, '$') => {
                let expanded = expand(&mut chars, vars).map_err(|e| format!("{e} in: {line}"))?;
                word.get_or_insert_with(String::new).push_str(&expanded);
            }
            (None, c) if c.is_whitespace() => out.extend(word.take()),
            (None, '#') if word.is_none() => break,
            (_, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    if quote.is_some() {
        return Err(format!("unterminated quote in: {line}"));
    }
    out.extend(word);
    Ok(out)
}

/// After `$`: a variable assigned earlier in the block, or `$(openssl rand -hex N)`.
fn expand(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, vars: &HashMap<String, String>) -> Result<String, String> {
    if chars.peek() == Some(&'(') {
        chars.next();
        let inner: String = chars.by_ref().take_while(|&c| c != ')').collect();
        let n = inner.strip_prefix("openssl rand -hex ").and_then(|n| n.trim().parse::<usize>().ok());
        return n.map(|n| "0123456789abcdef".repeat(n).chars().take(2 * n).collect()).ok_or(format!("cannot evaluate $({inner})"));
    }
    let mut name = String::new();
    while let Some(&c) = chars.peek().filter(|c| c.is_ascii_alphanumeric() || **c == '_') {
        name.push(c);
        chars.next();
    }
    vars.get(&name).cloned().ok_or(format!("${name} is not assigned earlier in the block"))
}

/// Every helm install/upgrade of the README, in order.
fn helm_commands(markdown: &str) -> Result<Vec<HelmCommand>, String> {
    let mut commands: Vec<HelmCommand> = Vec::new();
    for block in sh_blocks(markdown) {
        let mut vars = HashMap::new();
        for (i, line) in logical_lines(&block).into_iter().enumerate() {
            if line.starts_with("helm uninstall ") {
                // Renders nothing: the README's remedies start with it.
                continue;
            } else if line.starts_with("helm ") {
                commands.push(helm_command(&line, &words(&line, &vars)?)?);
            } else if line.starts_with("--") {
                let previous = commands.last().filter(|_| i == 0).ok_or(format!("flags that continue no command: {line}"))?;
                let mut extended = HelmCommand { line: format!("{} {line}", previous.line), ..previous.clone() };
                add_flags(&mut extended, &line, &words(&line, &vars)?)?;
                commands.push(extended);
            } else {
                assign(&line, &mut vars);
            }
        }
    }
    Ok(commands)
}

/// `A=1 B="$(openssl rand -hex 2)"`: records the variables a line assigns (one that cannot
/// be evaluated stays unassigned, and a command using it fails).
fn assign(line: &str, vars: &mut HashMap<String, String>) {
    let Ok(w) = words(line, vars) else { return };
    let assignments: Vec<(&str, &str)> = w.iter().map_while(|a| a.split_once('=')).collect();
    let is_name = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_uppercase() || c == '_');
    if assignments.len() == w.len() && assignments.iter().all(|(n, _)| is_name(n)) {
        vars.extend(assignments.into_iter().map(|(n, v)| (n.to_owned(), v.to_owned())));
    }
}

fn helm_command(line: &str, w: &[String]) -> Result<HelmCommand, String> {
    let (verb, release, chart) = match w {
        [_, verb, release, chart, ..] => (verb.as_str(), release.clone(), chart.as_str()),
        _ => return Err(format!("a helm command without verb, release and chart: {line}")),
    };
    let upgrade = match verb {
        "install" => false,
        "upgrade" => true,
        other => return Err(format!("helm {other} is not a command this test renders: {line}")),
    };
    if chart != "./chart" {
        return Err(format!("the README installs {chart}, not ./chart: {line}"));
    }
    let mut cmd = HelmCommand { line: line.to_owned(), upgrade, release, namespace: "default".into(), sets: Vec::new() };
    add_flags(&mut cmd, line, &w[4..])?;
    Ok(cmd)
}

fn add_flags(cmd: &mut HelmCommand, line: &str, flags: &[String]) -> Result<(), String> {
    let mut flags = flags.iter();
    while let Some(flag) = flags.next() {
        let mut value = || flags.next().cloned().ok_or(format!("{flag} without a value: {line}"));
        match flag.as_str() {
            "-n" | "--namespace" => cmd.namespace = value()?,
            "--set" | "--set-json" => {
                let kv = value()?;
                let (k, v) = kv.split_once('=').ok_or(format!("{flag} {kv} has no '=': {line}"))?;
                cmd.sets.push(if flag == "--set" {
                    Set::Text(k.to_owned(), v.to_owned())
                } else {
                    Set::Json(k.to_owned(), serde_json::from_str(v).map_err(|e| format!("{flag} {kv}: {e}: {line}"))?)
                });
            }
            "--reuse-values" if cmd.upgrade => {}
            other => return Err(format!("the README passes {other}, which this test does not know how to render: {line}")),
        }
    }
    Ok(())
}

/// `helm template` of a command; an upgrade with --reuse-values starts from the values of
/// the release's first install (what the release holds).
fn render_of(cmd: &HelmCommand, installs: &[HelmCommand]) -> Render {
    let base = installs.iter().find(|i| i.release == cmd.release).filter(|_| cmd.upgrade);
    let sets = base.into_iter().flat_map(|b| b.sets.iter()).chain(&cmd.sets);
    sets.fold(Render::new().release(&cmd.release).namespace(&cmd.namespace), |r, set| match set {
        Set::Text(k, v) => r.set(k, v),
        Set::Json(k, v) => r.set_json(k, v),
    })
}

#[test]
fn every_helm_command_of_the_chart_readme_renders() {
    let path = chart_dir().join("README.md");
    let markdown = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let commands = helm_commands(&markdown).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let installs: Vec<HelmCommand> = commands.iter().filter(|c| !c.upgrade).cloned().collect();
    assert!(installs.len() >= 3, "{}: found {} helm install commands, the README documents at least three", path.display(), installs.len());
    let renders: Vec<Render> = commands.iter().map(|c| render_of(c, &installs)).collect();
    for ((cmd, render), result) in commands.iter().zip(&renders).zip(render_all(&renders)) {
        let rendered = result.unwrap_or_else(|e| panic!("README command `{}` does not render: {e}\nargs: {:?}", cmd.line, render.args()));
        rendered.expect("Deployment", &format!("{}-certctl-server", cmd.release));
    }
}

#[test]
fn shell_words_are_evaluated_like_a_shell() {
    let vars = HashMap::from([("NEW".to_owned(), "n3w".to_owned())]);
    let w = words(r#"helm upgrade c ./chart --set a="$NEW" --set 'b=x\,y' --set c="$(openssl rand -hex 2)" --set d=\$"#, &vars).unwrap();
    assert_eq!(w, ["helm", "upgrade", "c", "./chart", "--set", "a=n3w", "--set", "b=x\\,y", "--set", "c=0123", "--set", "d=$"]);
    assert!(words("x \"$(date)\"", &vars).unwrap_err().contains("cannot evaluate $(date)"));
    assert!(words("x $UNSET", &vars).unwrap_err().contains("$UNSET is not assigned"));
}

#[test]
fn commands_come_from_sh_blocks_with_continuations_and_assignments() {
    let md = "text `helm install x ./chart`\n```sh\nNEW=\"$(openssl rand -hex 1)\"\nhelm upgrade c ./chart -n ns \\\n  --reuse-values --set k=\"$NEW\"\n```\n```yaml\nhelm: no\n```\n";
    let cmds = helm_commands(md).unwrap();
    assert_eq!(cmds.len(), 1);
    assert!(cmds[0].upgrade);
    assert_eq!(cmds[0].namespace, "ns");
    assert_eq!(cmds[0].sets, [Set::Text("k".into(), "01".into())]);
    assert!(helm_commands("```sh\nhelm install c ./chart --wait\n```\n").unwrap_err().contains("--wait"));
    assert!(helm_commands("```sh\nls\n  --set a=b\n```\n").unwrap_err().contains("continue no command"));
}

#[test]
fn a_block_of_flags_extends_the_install_before_it() {
    let md =
        "```sh\nhelm install c ./chart --set a=1\n```\nthen add:\n```sh\n  --set-json 'b=[\"x\"]' \\\n  --set c=2  # the URL's port\n```\n";
    let cmds = helm_commands(md).unwrap();
    assert_eq!(cmds.len(), 2);
    let want = [Set::Text("a".into(), "1".into()), Set::Json("b".into(), serde_json::json!(["x"])), Set::Text("c".into(), "2".into())];
    assert_eq!(cmds[1].sets, want);
}
