//! Scratch copies a mutant is applied to: the chart alone (read by the tests through
//! `CERTCTL_CHART_DIR`) or the whole workspace (a mutated server is rebuilt from it).

use std::path::{Path, PathBuf};

use super::{Edit, Mutant};

/// Errors making or mutating a scratch copy.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// The file system refused.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text a mutant replaces is not in its file exactly once: the file changed
    /// since the mutant was written, and the mutant must follow it.
    #[error("mutant {mutant} did not apply: {file} holds {found} occurrences of {find:?}, want exactly 1")]
    NotApplied {
        /// The mutant.
        mutant: String,
        /// Workspace-relative file.
        file: String,
        /// The text looked for.
        find: String,
        /// How often it occurs.
        found: usize,
    },
    /// An edit of a workspace file on a chart-only copy.
    #[error("mutant {mutant} edits {file}, outside chart/: it needs a scratch workspace")]
    OutsideChart {
        /// The mutant.
        mutant: String,
        /// Workspace-relative file.
        file: String,
    },
}

/// A scratch copy, deleted when dropped.
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
    workspace: bool,
}

/// Top-level names a workspace copy leaves out: build output and history.
const NOT_COPIED: [&str; 2] = ["target", ".git"];

impl Scratch {
    /// A copy of `workspace/chart`.
    ///
    /// # Errors
    /// [`ScratchError::Io`].
    pub fn chart(workspace: &Path) -> Result<Self, ScratchError> {
        let dir = temp_dir()?;
        copy_tree(&workspace.join("chart"), &dir.path().join("chart"), &[])?;
        Ok(Self { dir, workspace: false })
    }

    /// A copy of the workspace without `target/` and `.git`.
    ///
    /// # Errors
    /// [`ScratchError::Io`].
    pub fn workspace(workspace: &Path) -> Result<Self, ScratchError> {
        let dir = temp_dir()?;
        copy_tree(workspace, dir.path(), &NOT_COPIED)?;
        Ok(Self { dir, workspace: true })
    }

    /// The copy's root: workspace-relative paths resolve against it.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The copy's chart directory.
    pub fn chart_dir(&self) -> PathBuf {
        self.root().join("chart")
    }

    /// Applies every edit of `mutant`.
    ///
    /// # Errors
    /// [`ScratchError::NotApplied`] when a target is missing or ambiguous,
    /// [`ScratchError::OutsideChart`] for a workspace edit on a chart copy.
    pub fn apply(&self, mutant: &Mutant) -> Result<(), ScratchError> {
        for edit in &mutant.edits {
            self.apply_edit(mutant.id, edit)?;
        }
        Ok(())
    }

    fn apply_edit(&self, mutant: &str, edit: &Edit) -> Result<(), ScratchError> {
        if !self.workspace && !edit.file.starts_with("chart/") {
            return Err(ScratchError::OutsideChart { mutant: mutant.into(), file: edit.file.into() });
        }
        let path = self.root().join(edit.file);
        let text = std::fs::read_to_string(&path).map_err(|source| ScratchError::Io { action: "read", path: path.clone(), source })?;
        let found = text.matches(edit.find.as_str()).count();
        if found != 1 {
            return Err(ScratchError::NotApplied { mutant: mutant.into(), file: edit.file.into(), find: edit.find.clone(), found });
        }
        std::fs::write(&path, text.replacen(edit.find.as_str(), &edit.replace, 1)).map_err(|source| ScratchError::Io {
            action: "write",
            path,
            source,
        })
    }
}

fn temp_dir() -> Result<tempfile::TempDir, ScratchError> {
    tempfile::Builder::new().prefix("certctl-mutant-").tempdir().map_err(|source| ScratchError::Io {
        action: "create a temporary directory in",
        path: std::env::temp_dir(),
        source,
    })
}

/// Copies `from` into `to`, leaving out top-level entries named in `skip`.
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> Result<(), ScratchError> {
    fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ScratchError + 'a {
        move |source| ScratchError::Io { action, path: path.to_owned(), source }
    }
    std::fs::create_dir_all(to).map_err(io("create", to))?;
    for entry in std::fs::read_dir(from).map_err(io("read", from))? {
        let entry = entry.map_err(io("read", from))?;
        if skip.iter().any(|s| entry.file_name() == *s) {
            continue;
        }
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(io("stat", &source))?;
        if kind.is_dir() {
            copy_tree(&source, &target, &[])?;
        } else if kind.is_file() {
            std::fs::copy(&source, &target).map_err(io("copy", &source))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutants::Killer;

    fn mutant(file: &'static str, find: &'static str) -> Mutant {
        Mutant {
            id: "t",
            reintroduces: "test",
            edits: vec![Edit::new(file, find, "B")],
            killers: vec![Killer::render("render_values", "")],
        }
    }

    fn workspace_with(text: &str) -> tempfile::TempDir {
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("chart/templates")).unwrap();
        std::fs::write(ws.path().join("chart/templates/x.yaml"), text).unwrap();
        ws
    }

    #[test]
    fn an_edit_applies_once_to_the_copy_not_the_original() {
        let ws = workspace_with("xAx");
        let s = Scratch::chart(ws.path()).unwrap();
        s.apply(&mutant("chart/templates/x.yaml", "A")).unwrap();
        assert_eq!(std::fs::read_to_string(s.chart_dir().join("templates/x.yaml")).unwrap(), "xBx");
        assert_eq!(std::fs::read_to_string(ws.path().join("chart/templates/x.yaml")).unwrap(), "xAx");
    }

    #[test]
    fn a_missing_or_doubled_target_does_not_apply() {
        for (text, found) in [("xx", 0), ("AxA", 2)] {
            let ws = workspace_with(text);
            let s = Scratch::chart(ws.path()).unwrap();
            match s.apply(&mutant("chart/templates/x.yaml", "A")) {
                Err(ScratchError::NotApplied { found: f, .. }) => assert_eq!(f, found),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_chart_copy_refuses_workspace_edits() {
        let ws = workspace_with("A");
        let s = Scratch::chart(ws.path()).unwrap();
        assert!(matches!(s.apply(&mutant("server/src/lib.rs", "A")), Err(ScratchError::OutsideChart { .. })));
    }
}
