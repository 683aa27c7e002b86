//! The management plane's TLS (`[management] tls_cert`, `tls_key`): rustls through
//! tokio-rustls, TLS 1.3 and 1.2 only, the certificate chain and key read from PEM files and
//! read again when either changes (looked at, at most every [`RELOAD_CHECK`], when a
//! connection comes), so a renewed certificate is served without a restart. A pair that
//! cannot be read or does not match keeps the one in use, with an error logged once per
//! change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How often the files are looked at for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The files' modification times and sizes when last read.
type Stamp = [(Option<SystemTime>, u64); 2];

/// The acceptor of the management listener, and the files it came from.
pub(crate) struct Tls {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<State>,
}

struct State {
    acceptor: TlsAcceptor,
    stamp: Stamp,
    checked: Instant,
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| std::fs::metadata(p).map_or((None, 0), |m| (m.modified().ok(), m.len()));
    [one(cert), one(key)]
}

/// A server config of the certificate chain in `cert` and the key in `key` (PEM).
fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    // ring, as for the inputs' TLS (`input::http_pull`): a lean build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("{} with its key: {e}", cert.display()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

impl Tls {
    /// Reads the pair; an error names the file.
    pub(crate) fn load(cert: &Path, key: &Path) -> Result<Tls, String> {
        let cfg = server_config(cert, key)?;
        Ok(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            state: Mutex::new(State {
                acceptor: TlsAcceptor::from(Arc::new(cfg)),
                stamp: stamp(cert, key),
                checked: Instant::now(),
            }),
        })
    }

    /// The acceptor for a new connection: the pair read again first if it changed.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.checked.elapsed() >= RELOAD_CHECK {
            st.checked = Instant::now();
            let now = stamp(&self.cert, &self.key);
            if now != st.stamp {
                st.stamp = now;
                match server_config(&self.cert, &self.key) {
                    Ok(cfg) => {
                        st.acceptor = TlsAcceptor::from(Arc::new(cfg));
                        tracing::info!(cert = %self.cert.display(), "management TLS certificate read again");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "management TLS certificate not read again: the one in use stays");
                    }
                }
            }
        }
        st.acceptor.clone()
    }
}
