//! Configuration errors: every problem carries the file and the key path it was found at.

use std::fmt;
use std::ops::RangeInclusive;

/// One configuration problem, located by file and key path.
///
/// `Display` gives `"{file}: {path}: {message}"`, e.g.
/// `example.toml: channel[2].output[0].url: unsupported scheme `srtx`, expected udp or rtp`.
/// A TOML syntax error uses `line L, column C` as its path; a problem with the whole file
/// (it cannot be read) has an empty path and prints as `"{file}: {message}"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfigError {
    /// The file as named by the caller of [`super::load`] or [`super::parse`].
    pub(crate) file: String,
    /// Key path such as `channel[1].muxrate` or `mpts[0].channels[2]`; may be empty.
    pub(crate) path: String,
    /// What is wrong, on one line: lowercase, no trailing period.
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration file, in document order; never empty.
///
/// `Display` prints one error per line, without a trailing newline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfigErrors(pub(crate) Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors while the validator walks one document.
#[derive(Debug)]
pub(super) struct Diagnostics {
    file: String,
    errors: Vec<ConfigError>,
}

impl Diagnostics {
    pub(super) fn new(file: &str) -> Self {
        Self {
            file: file.to_owned(),
            errors: Vec::new(),
        }
    }

    /// Number of errors so far; converters compare it before and after to know whether they
    /// reported anything.
    pub(super) fn len(&self) -> usize {
        self.errors.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Records one error; line breaks in `path` or `message` are flattened so that
    /// [`ConfigErrors`] stays one error per line.
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            path: one_line(&path.into()),
            message: one_line(&message.into()),
        });
    }

    /// Records a serde error from deserializing the item at `path`. The toml crate appends
    /// the failing key path (`in `pids.audio``) to its `Display` output when the value came
    /// from a `toml::Value`; it is moved into our path.
    pub(super) fn toml(&mut self, path: &str, err: &toml::de::Error) {
        let shown = err.to_string();
        let keys = shown
            .lines()
            .filter_map(|line| line.strip_prefix("in `")?.strip_suffix('`'))
            .next_back();
        let path = match keys {
            Some(keys) if !keys.is_empty() => format!("{path}.{keys}"),
            _ => path.to_owned(),
        };
        self.push(path, err.message());
    }

    /// Records a TOML syntax error, located by 1-based line and column (in characters).
    pub(super) fn syntax(&mut self, text: &str, err: &toml::de::Error) {
        let path = match err.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                format!("line {line}, column {column}")
            }
            None => String::new(),
        };
        self.push(path, format!("TOML syntax error: {}", err.message()));
    }

    /// Checks that an integer key lies in `range`, reporting it at `path` otherwise.
    pub(super) fn ranged<T>(
        &mut self,
        path: String,
        value: i64,
        range: RangeInclusive<T>,
    ) -> Option<T>
    where
        T: Copy + fmt::Display + Into<i64> + TryFrom<i64>,
    {
        let (low, high) = (*range.start(), *range.end());
        if (low.into()..=high.into()).contains(&value) {
            if let Ok(value) = T::try_from(value) {
                return Some(value);
            }
        }
        self.push(
            path,
            format!("{value} is out of range, expected {low}..={high}"),
        );
        None
    }

    pub(super) fn finish(self) -> ConfigErrors {
        ConfigErrors(self.errors)
    }
}

fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(line.trim_end());
    }
    out
}

/// 1-based line and column of byte `offset` in `text`; the column counts characters.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_path() {
        let with = ConfigError {
            file: "a.toml".into(),
            path: "channel[0].id".into(),
            message: "bad".into(),
        };
        let without = ConfigError {
            file: "a.toml".into(),
            path: String::new(),
            message: "unreadable".into(),
        };
        assert_eq!(with.to_string(), "a.toml: channel[0].id: bad");
        assert_eq!(without.to_string(), "a.toml: unreadable");
        let all = ConfigErrors(vec![with, without]);
        assert_eq!(
            all.to_string(),
            "a.toml: channel[0].id: bad\na.toml: unreadable"
        );
    }

    #[test]
    fn messages_are_one_line() {
        let mut diag = Diagnostics::new("f");
        diag.push("a\nb", "first\n\nsecond\n");
        let errors = diag.finish();
        assert_eq!(errors.0[0].path, "a; b");
        assert_eq!(errors.0[0].message, "first; second");
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nxé", 6), (2, 3));
        assert_eq!(line_column("ab", 99), (1, 3));
        // Inside a multi-byte character: rounds down.
        assert_eq!(line_column("é", 1), (1, 1));
    }

    #[test]
    fn ranged_reports_the_range() {
        let mut diag = Diagnostics::new("f");
        assert_eq!(diag.ranged("p".into(), 7, 1u8..=9), Some(7));
        assert_eq!(diag.ranged("p".into(), 0, 1u8..=255), None);
        assert_eq!(diag.ranged("p".into(), i64::MIN, 0u16..=65535), None);
        let errors = diag.finish();
        assert_eq!(errors.0[0].message, "0 is out of range, expected 1..=255");
        assert_eq!(errors.0.len(), 2);
    }
}
