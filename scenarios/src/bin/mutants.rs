//! The mutation runner: `cargo run -p certctl-scenarios --bin mutants -- [--tier T]... [--out DIR] [--list] [ID]...`
//!
//! - `--tier render|server|live|all` (repeatable; default `render`): which killers may run.
//! - `--out DIR`: where `mutants.md`, `junit-mutants.xml` and live artifacts go
//!   (default `target/mutants/` of the workspace).
//! - `--list`: the catalogue, one mutant a line.
//!
//! Exits 1 when a mutant survives, did not apply or could not run.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use certctl_scenarios::mutants::catalogue::catalogue;
use certctl_scenarios::mutants::report::{self, Score};
use certctl_scenarios::mutants::run::{run, Options};
use certctl_scenarios::mutants::Tier;

fn main() -> ExitCode {
    match parse(std::env::args().skip(1).collect()) {
        Ok(Command::List) => {
            for m in catalogue() {
                println!("{:<48} {:<7} {}", m.id, m.tier().name(), m.reintroduces);
            }
            ExitCode::SUCCESS
        }
        Ok(Command::Run(opts)) => score(&opts),
        Err(usage) => {
            eprintln!("{usage}\nusage: mutants [--tier render|server|live|all]... [--out DIR] [--list] [ID]...");
            ExitCode::from(2)
        }
    }
}

enum Command {
    List,
    Run(Options),
}

fn parse(args: Vec<String>) -> Result<Command, String> {
    let workspace = certctl_harness::workspace::root();
    let mut opts = Options { out: workspace.join("target/mutants"), workspace, tiers: BTreeSet::new(), only: Vec::new() };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--list" => return Ok(Command::List),
            "--tier" => {
                let name = args.next().ok_or("--tier needs a value")?;
                if name == "all" {
                    opts.tiers.extend(Tier::ALL);
                } else {
                    opts.tiers.insert(Tier::ALL.into_iter().find(|t| t.name() == name).ok_or(format!("unknown tier {name:?}"))?);
                }
            }
            "--out" => opts.out = PathBuf::from(args.next().ok_or("--out needs a directory")?),
            flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}")),
            id => opts.only.push(id.to_owned()),
        }
    }
    if opts.tiers.is_empty() {
        opts.tiers.insert(Tier::Render);
    }
    Ok(Command::Run(opts))
}

fn score(opts: &Options) -> ExitCode {
    let result = match run(opts, &catalogue()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mutants: {}", certctl_harness::report::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    println!("{}", report::markdown(&result));
    match report::write(&result, &opts.out) {
        Ok((md, xml)) => eprintln!("wrote {} and {}", md.display(), xml.display()),
        Err(e) => eprintln!("cannot write the reports into {}: {e}", opts.out.display()),
    }
    eprintln!("{}", Score::of(&result).summary());
    if result.all_killed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
