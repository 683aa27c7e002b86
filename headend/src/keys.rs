//! Where control words come from, for the stations' scramblers: the OS random generator, or a
//! key file read when the station is built (the only file the scrambling needs, so the driver
//! reads it: the station core does no I/O).

use drm::cipher::ControlWord;
use drm::keys::KeySource;

use crate::config::{KeySourceConfig, ScramblingConfig};

/// Where the words of a scrambled channel come from: random words (also with SimulCrypt), or
/// the key file, read now (the only I/O scrambling does, so the driver does it).
pub(crate) fn key_source(cfg: &ScramblingConfig) -> anyhow::Result<Box<dyn KeySource + Send>> {
    Ok(match &cfg.keys {
        KeySourceConfig::Random | KeySourceConfig::Simulcrypt(_) => Box::new(RandomKeys),
        KeySourceConfig::File(path) => Box::new(FileKeys::read(path)?),
    })
}

/// Fresh words from the OS random generator.
struct RandomKeys;

impl KeySource for RandomKeys {
    fn control_word(&mut self, _cp: u16) -> Result<ControlWord, drm::keys::KeyError> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b)
            .map_err(|e| drm::keys::KeyError::Unavailable(format!("OS random generator: {e}")))?;
        Ok(ControlWord::new(b))
    }
}

/// Fixed words from a key file (BISS-style): one line (both parities) or two (even, odd).
struct FileKeys {
    even: ControlWord,
    odd: ControlWord,
}

impl FileKeys {
    fn read(path: &std::path::Path) -> anyhow::Result<FileKeys> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| anyhow::anyhow!("key file {}: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "key file {}: permissions {mode:03o} let others read it; `chmod 600` it",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("key file {}: {e}", path.display()))?;
        let words: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let parse = |i: usize, w: &str| {
            ControlWord::from_hex(w).map_err(|_| {
                // The line itself is never repeated: it is key material.
                anyhow::anyhow!(
                    "key file {}: word {} is not 32 hex digits",
                    path.display(),
                    i + 1
                )
            })
        };
        match words.as_slice() {
            [w] => Ok(FileKeys {
                even: parse(0, w)?,
                odd: parse(0, w)?,
            }),
            [e, o] => Ok(FileKeys {
                even: parse(0, e)?,
                odd: parse(1, o)?,
            }),
            _ => anyhow::bail!(
                "key file {}: expected one word (both parities) or two (even, odd)",
                path.display()
            ),
        }
    }
}

impl KeySource for FileKeys {
    fn control_word(&mut self, cp: u16) -> Result<ControlWord, drm::keys::KeyError> {
        Ok(if cp % 2 == 0 {
            self.even.clone()
        } else {
            self.odd.clone()
        })
    }
}
