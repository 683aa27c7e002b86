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

/// The lines of key file `path` (blank lines and `#` comments left out), once its mode says
/// only its owner may read it.
fn key_lines(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| anyhow::anyhow!("key file {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "key file {}: permissions {mode:03o} let others read it; `chmod 600` it",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("key file {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// A 16-byte key from key file `path`: one line of 32 hex digits (HLS AES-128's master key).
pub(crate) fn read_key16(path: &std::path::Path) -> anyhow::Result<[u8; 16]> {
    let lines = key_lines(path)?;
    let [line] = lines.as_slice() else {
        anyhow::bail!(
            "key file {}: expected one line of 32 hex digits",
            path.display()
        );
    };
    let word = ControlWord::from_hex(line)
        .map_err(|_| anyhow::anyhow!("key file {}: not 32 hex digits", path.display()))?;
    Ok(*word.as_bytes())
}

impl FileKeys {
    fn read(path: &std::path::Path) -> anyhow::Result<FileKeys> {
        let lines = key_lines(path)?;
        let words: Vec<&str> = lines.iter().map(String::as_str).collect();
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

#[cfg(test)]
mod tests {
    use super::read_key16;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_16_byte_key_file_is_one_private_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let write = |text: &str, mode: u32| {
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("# hls\n000102030405060708090a0b0c0d0e0f\n", 0o600);
        let k = read_key16(&p).unwrap();
        assert_eq!(k[15], 15);
        write("000102030405060708090a0b0c0d0e0f\n", 0o644);
        assert!(read_key16(&p)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
        write("00\n11\n", 0o600);
        assert!(read_key16(&p).unwrap_err().to_string().contains("one line"));
        write("zz0102030405060708090a0b0c0d0e0f\n", 0o400);
        let e = read_key16(&p).unwrap_err().to_string();
        assert!(
            e.contains("not 32 hex digits") && !e.contains("zz01"),
            "{e}"
        );
    }
}
