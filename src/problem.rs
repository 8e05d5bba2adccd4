//! One problem found in a project's files, whatever stage found it (config,
//! pipelines, the SQL catalog, planning): the file, the line where there is
//! one, the key or object, and what is wrong. It owns the one way problems are
//! printed, `file:line: key: message`, so that an editor can jump to each.
//! Finding problems is the job of the modules that read the files.

use std::fmt;

/// One problem: file, line (1-based, where known), key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: Option<usize>,
    /// The config key (`reporting.timezone`) or the object (`model "mrr_monthly"`);
    /// empty where the problem is the file's as a whole.
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(file: impl Into<String>, line: Option<usize>, key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            file: file.into(),
            line,
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Problems one per line, as error messages print them.
pub fn lines(problems: &[Problem]) -> String {
    problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_file_line_key_and_message() {
        let p = Problem::new("config/tenure.toml", Some(12), "reporting.timezone", "unknown timezone");
        assert_eq!(p.to_string(), "config/tenure.toml:12: reporting.timezone: unknown timezone");
        let p = Problem::new("pipelines", None, "", "no pipeline defined");
        assert_eq!(p.to_string(), "pipelines: no pipeline defined");
        assert_eq!(line_at("a\nb\nc", 0), 1);
        assert_eq!(line_at("a\nb\nc", 2), 2);
        assert_eq!(line_at("a\nb\nc", 99), 3);
    }
}
