//! The flaky allow-list: tests known to pass only on retry, each with the reason it
//! is tolerated and the date the tolerance ends.
//!
//! One entry a line, `#` starts a comment:
//! ```text
//! <binary-id> <test-name> | <expires, YYYY-MM-DD, UTC> | <reason>
//! ```

use std::path::{Path, PathBuf};

use time::macros::format_description;
use time::Date;

use crate::outcomes::TestId;

/// Where the allow-list lives, relative to the workspace.
pub const PATH: &str = ".config/flaky-allowlist.txt";

/// One tolerated flaky test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The test.
    pub test: TestId,
    /// The last day it is tolerated.
    pub expires: Date,
    /// Why it is tolerated (an issue, a cause).
    pub reason: String,
    /// Its line in the file, for messages.
    pub line: usize,
}

/// The parsed allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    /// The entries in file order.
    pub entries: Vec<Entry>,
}

/// A malformed allow-list.
#[derive(Debug, thiserror::Error)]
pub enum AllowListError {
    /// The file could not be read.
    #[error("cannot read the flaky allow-list {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `test | expires | reason`.
    #[error("{path}:{line}: {problem}; expected `<binary-id> <test-name> | YYYY-MM-DD | <reason>`")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
}

impl AllowList {
    /// Reads the allow-list; a missing file is an empty list.
    ///
    /// # Errors
    /// [`AllowListError`] naming the file and line.
    pub fn read(path: &Path) -> Result<Self, AllowListError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(AllowListError::Io { path: path.to_path_buf(), source }),
        }
    }

    /// Parses the text of an allow-list (`path` is for messages).
    ///
    /// # Errors
    /// [`AllowListError::Line`] for the first malformed line.
    ///
    /// # Example
    /// ```
    /// use certctl_ci::allowlist::AllowList;
    /// let list = AllowList::parse("certctl-scenarios::e2e ha::pdb | 2026-12-31 | kube-router resync, issue 21\n", "f".as_ref()).unwrap();
    /// assert_eq!(list.entries[0].test.name, "ha::pdb");
    /// assert!(AllowList::parse("x y | soon | why\n", "f".as_ref()).is_err());
    /// ```
    pub fn parse(text: &str, path: &Path) -> Result<Self, AllowListError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |problem: String| AllowListError::Line { path: path.to_path_buf(), line: i + 1, problem };
            let fields: Vec<&str> = line.splitn(3, '|').map(str::trim).collect();
            let [test, expires, reason] = fields[..] else {
                return Err(bad(format!("{} field(s) where 3 are needed", fields.len())));
            };
            let Some((binary, name)) = test.split_once(char::is_whitespace) else {
                return Err(bad(format!("`{test}` is not `<binary-id> <test-name>`")));
            };
            let expires = Date::parse(expires, format_description!("[year]-[month]-[day]"))
                .map_err(|e| bad(format!("expiry `{expires}` is not a date ({e})")))?;
            if reason.is_empty() {
                return Err(bad("the reason is empty".into()));
            }
            entries.push(Entry { test: TestId::new(binary, name.trim()), expires, reason: reason.to_string(), line: i + 1 });
        }
        Ok(Self { entries })
    }

    /// The entry for `test`, if any.
    pub fn find(&self, test: &TestId) -> Option<&Entry> {
        self.entries.iter().find(|e| &e.test == test)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn comments_blanks_and_entries() {
        let text = "# known flakes\n\ncertctl-ci::fixture fails_once | 2026-12-31 | retried on purpose # trailing\n";
        let list = AllowList::parse(text, Path::new("a")).unwrap();
        assert_eq!(
            list.entries,
            [Entry {
                test: TestId::new("certctl-ci::fixture", "fails_once"),
                expires: date!(2026 - 12 - 31),
                reason: "retried on purpose".into(),
                line: 3
            }]
        );
        assert!(list.find(&TestId::new("certctl-ci::fixture", "fails_once")).is_some());
        assert!(list.find(&TestId::new("certctl-ci::fixture", "other")).is_none());
    }

    #[test]
    fn each_malformation_names_its_line_and_problem() {
        for (text, problem) in [
            ("b t | 2026-12-31\n", "2 field(s)"),
            ("onlyone | 2026-12-31 | r\n", "is not `<binary-id> <test-name>`"),
            ("b t | 31/12/2026 | r\n", "expiry `31/12/2026` is not a date"),
            ("b t | 2026-12-31 |  \n", "the reason is empty"),
        ] {
            let err = AllowList::parse(&format!("# header\n{text}"), Path::new("list.txt")).unwrap_err().to_string();
            assert!(err.starts_with("list.txt:2: ") && err.contains(problem), "{err}");
        }
    }

    #[test]
    fn a_missing_file_is_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(AllowList::read(&dir.path().join("none")).unwrap(), AllowList::default());
    }
}
